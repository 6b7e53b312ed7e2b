//  Redis with AOF (appendfsync everysec), as the project recommends: after
//  kill -9 of redis-server and a restart on the same data, the bridge
//  reconnects and goes on; seqs continue, nothing receipted more than a
//  second before the crash is lost, and MongoDB has every message once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { Host, collect, freePort, sendWithReceipt, sleep, waitFor, withMongo } from './harness.mjs';

let host;
let redis;
const data = mkdtempSync(join(tmpdir(), 'parley-redis-'));
after(async () => {
    await host?.down();
    redis?.kill('SIGKILL');
    rmSync(data, { recursive: true, force: true });
});

async function startRedis (port) {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', data,
        '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', ''], { stdio: 'ignore' });
    await waitFor('redis', () => new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => { socket.end(); resolve(true); });
        socket.on('error', () => resolve(false));
    }));
    return child;
}

test('kill -9 of Redis (AOF everysec): the bridge reconnects and nothing receipted is lost', async () => {
    const port = await freePort();
    redis = await startRedis(port);
    host = await new Host({ redisUrl: `redis://127.0.0.1:${port}` }).up();
    const token = host.token('alice', 'Alice');
    const room = await host.createRoom(token, { kind: 'direct', members: ['bob'] });
    const alice = await host.stomp(token);
    const bob = await host.stomp(host.token('bob', 'Bob'));
    const bobSees = await collect(bob, room.id);
    for (let i = 1; i <= 100; i++) assert.equal(await sendWithReceipt(alice, room.id, `before ${i}`), i);
    await sleep(1500);          //  one fsync of the AOF
    const exited = new Promise((resolve) => redis.once('exit', resolve));
    redis.kill('SIGKILL');
    await exited;
    await sleep(500);
    redis = await startRedis(port);
    await waitFor('the host ready again', async () => (await fetch(`${host.base}/readyz`)).status === 200, 20000);
    //  The client sends again what failed; seqs continue after 100
    for (let i = 101; i <= 150; i++) {
        let seq;
        for (let tries = 0; !seq && tries < 50; tries++) {
            try { seq = await sendWithReceipt(alice, room.id, `after ${i}`, `id-${i}`); } catch { await sleep(100); }
        }
        assert.equal(seq, i);
    }
    await waitFor('bob sees the new ones', () => bobSees.some((m) => m.body.seq === 150), 20000);
    await waitFor('all 150 stored once', () => withMongo(host.database, async (db) =>
        (await db.collection('messages').countDocuments({ roomId: room.id })) === 150), 30000);
    await alice.deactivate();
    await bob.deactivate();
});
