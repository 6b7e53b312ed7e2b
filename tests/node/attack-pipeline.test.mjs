//  A pipelined HTTP request behind one that waits for the router must not
//  keep the connection actor busy: lws would poll the buffered request in a
//  busy loop (a whole core) until the first was answered. Reading is held
//  while an answer is awaited; every answer closes its connection, so the
//  second request is never served.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { Host, sleep, waitFor } from './harness.mjs';

let host;
after(async () => { await host?.down(); });

//  CPU time of a process in clock ticks (user + system)
function ticks (pid) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(fields[11]) + Number(fields[12]);
}

test('a pipelined request while the first waits: no busy loop, the first is answered', async () => {
    host = await new Host({ extra: ['--request-timeout-ms', '8000'] }).up();
    const request = `GET /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${host.token('u1', 'U')}\r\n\r\n`;
    //  The store stops answering, so the first request waits
    process.kill(host.pid('store-0'), 'SIGSTOP');
    const sockets = [];
    try {
        for (let i = 0; i < 4; i++) {
            const socket = connect(host.port, '127.0.0.1');
            socket.received = '';
            socket.on('data', (data) => { socket.received += data; });
            socket.on('error', () => {});
            await new Promise((resolve) => socket.on('connect', resolve));
            socket.write(request + request);
            sockets.push(socket);
        }
        const before = ticks(host.pid('conn-0'));
        await sleep(3000);
        const used = ticks(host.pid('conn-0')) - before;
        assert.ok(used < 60, `the connection actor used ${used} ticks in 3 s while requests waited`);
    } finally {
        process.kill(host.pid('store-0'), 'SIGCONT');
    }
    for (const socket of sockets)
        await waitFor('the first answer', () => socket.received.startsWith('HTTP/1.1 200'), 15000);
    //  One answer each: the connection closes after it
    for (const socket of sockets) {
        assert.equal(socket.received.split('HTTP/1.1 ').length - 1, 1);
        socket.destroy();
    }
    assert.equal((await host.http('GET', '/healthz')).status, 200);
});
