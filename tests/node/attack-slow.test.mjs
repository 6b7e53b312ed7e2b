//  Slow and silent clients (issue 8, an attack that held; kept so it
//  stays held): connections that send their request head a byte at a time,
//  or nothing at all, are answered 408 in JSON and closed after
//  http-head-timeout-s (counted in /metrics), and while they hang on,
//  everyone else is served as usual.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Host, sendWithReceipt, sleep, waitFor } from './harness.mjs';

const HEAD_TIMEOUT_S = 2;
const SLOW_CLIENTS = 60;
let host;

before(async () => {
    host = await new Host({ extra: ['--http-head-timeout-s', String(HEAD_TIMEOUT_S)] }).up();
});
after(async () => {
    await host?.down();
});

//  A client that starts a request and then trickles header bytes (or, with
//  silent, says nothing at all); resolves with the ms until the server
//  closed it and what the server said
function slowClient (silent) {
    return new Promise((resolve) => {
        const started = Date.now();
        const socket = net.connect(host.port, '127.0.0.1');
        let timer = null;
        let answer = '';
        socket.on('data', (chunk) => { answer += chunk.toString('latin1'); });
        socket.on('error', () => {});
        socket.on('close', () => { clearInterval(timer); resolve({ ms: Date.now() - started, answer }); });
        socket.on('connect', () => {
            if (silent) return;
            socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
            timer = setInterval(() => socket.write('X'), 250);
        });
        //  Bounded: a server that never closes fails the test, not hangs it
        setTimeout(() => socket.destroy(), 30000).unref();
    });
}

test('slow and silent clients are answered 408 and closed after http-head-timeout-s; the rest are served', async () => {
    const timedOut = await host.counter('parley_conn_http_refused_timeout_total');
    const closed = [];
    for (let i = 0; i < SLOW_CLIENTS; i++) closed.push(slowClient(i % 2 === 0));
    //  Meanwhile a real user creates a room and talks in it
    const alice = host.token('alice', 'Alice');
    const room = await host.createRoom(alice, { kind: 'direct', members: ['bob'] });
    const client = await host.stomp(alice);
    const started = Date.now();
    for (let i = 0; i < 20; i++) await sendWithReceipt(client, room.id, `hello ${i}`);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 2000, `20 receipts took ${elapsed} ms beside ${SLOW_CLIENTS} slow clients`);
    const health = await fetch(`${host.base}/healthz`);
    assert.equal(health.status, 200);
    const clients = await Promise.all(closed);
    const times = clients.map(({ ms }) => ms);
    const slowest = Math.max(...times);
    console.log(`# ${SLOW_CLIENTS} slow clients closed after ${Math.min(...times)}..${slowest} ms`);
    assert.ok(times.every((ms) => ms >= HEAD_TIMEOUT_S * 1000 - 100), 'not closed before the timeout');
    assert.ok(slowest < (HEAD_TIMEOUT_S + 3) * 1000, `closed after ${slowest} ms`);
    //  Each was told why, in JSON, before the close
    for (const { answer } of clients) {
        assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/, answer);
        assert.match(answer, /\r\ncontent-type: application\/json\r\n/);
        assert.match(answer, /\r\nconnection: close\r\n/);
        const body = answer.slice(answer.indexOf('\r\n\r\n') + 4);
        assert.deepEqual(JSON.parse(body), { error: `request head not received within ${HEAD_TIMEOUT_S} s` });
    }
    await waitFor('the 408s in /metrics', async () =>
        await host.counter('parley_conn_http_refused_timeout_total') >= timedOut + SLOW_CLIENTS, 5000);
    await client.deactivate();
    await waitFor('the actor still answers', async () => (await fetch(`${host.base}/healthz`)).status === 200);
    await sleep(10);
});
