//  redis-min-replicas (issue 12): a RECEIPT waits until a replica has the
//  append. A replica that does not confirm in time makes the SEND an
//  ERROR, not a receipt; sent again with the same clientMsgId once the
//  replica is back, the message gets the seq it was first given, and
//  MongoDB stores it once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, collect, freePort, replicaLinked, sendWithReceipt, startRedis, waitFor, withMongo } from './harness.mjs';

const servers = [];
let host;
after(async () => {
    await host?.down();
    for (const { child, dir } of servers) {
        child.kill('SIGCONT');
        child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
    }
});

//  A redis-server of its own folder (removed after the test)
async function startServer (...args) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'parley-replicas-'));
    const child = await startRedis(port, dir, ...args);
    servers.push({ child, dir });
    return { port, child };
}

test('redis-min-replicas 1: no RECEIPT without the replica, and the retry keeps its seq', async () => {
    const primary = await startServer();
    const replica = await startServer('--replicaof', '127.0.0.1', String(primary.port));
    await waitFor('the replica linked', () => replicaLinked(replica.port));
    host = await new Host({ redisUrl: `redis://127.0.0.1:${primary.port}`,
        extra: ['--redis-min-replicas', '1', '--redis-wait-timeout-ms', '300'] }).up();
    const token = host.token('alice', 'Alice');
    const room = (await host.createRoom(token, { kind: 'direct', members: ['bob'] })).id;
    const bob = await host.stomp(host.token('bob', 'Bob'));
    const bobSees = await collect(bob, room);
    const alice = await host.stomp(token);
    assert.equal(await sendWithReceipt(alice, room, 'one', 'c1'), 1);

    //  The replica stops answering: the SEND is refused, not receipted
    replica.child.kill('SIGSTOP');
    const refused = new Promise((resolve) => { alice.onStompError = (frame) => resolve(frame.headers.message); });
    sendWithReceipt(alice, room, 'two', 'c2').then(() => assert.fail('receipted without the replica'), () => {});
    assert.match(await refused, /not confirmed by 1 Redis replicas in time, send it again with the same clientMsgId/);
    replica.child.kill('SIGCONT');
    await waitFor('the replica linked again', () => replicaLinked(replica.port));

    //  Sent again: the seq it was given first, then the next ones follow
    const again = await host.stomp(token);
    assert.equal(await sendWithReceipt(again, room, 'two', 'c2'), 2);
    assert.equal(await sendWithReceipt(again, room, 'three', 'c3'), 3);
    await waitFor('bob has all three', () => bobSees.some((m) => m.body.seq === 3));
    assert.deepEqual(bobSees.map((m) => m.body.seq), [1, 2, 3]);
    await waitFor('three stored once', () => withMongo(host.database, async (db) =>
        (await db.collection('messages').countDocuments({ roomId: room })) === 3));
    await waitFor('the refusal counted', async () =>
        /parley_bridge_unreplicated_total\S* [1-9]/.test(await (await fetch(`${host.base}/metrics`)).text()));
    await again.deactivate();
    await bob.deactivate();
});
