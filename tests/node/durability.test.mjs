//  Redis with AOF (appendfsync everysec), as the project recommends: after
//  kill -9 of redis-server and a restart on the same data, the bridge
//  reconnects and goes on; seqs continue, nothing receipted more than a
//  second before the crash is lost, and MongoDB has every message once.
//  And when the AOF lost its tail (what everysec can lose), the rooms' seq
//  counters come back behind MongoDB: new messages still get seqs above
//  everything MongoDB holds, none is refused as a seq already taken, and
//  a message sent again whose clientMsgId Redis lost keeps its seq.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, collect, freePort, redisCli, sendWithReceipt, sleep, startRedis, waitFor, withMongo } from './harness.mjs';

let host;
let redis;
let data = mkdtempSync(join(tmpdir(), 'parley-redis-'));
const folders = [data];
after(async () => {
    await host?.down();
    redis?.kill('SIGKILL');
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

//  AOF, fsync once a second, as the project recommends
const startAofRedis = (port) => startRedis(port, data, '--appendonly', 'yes', '--appendfsync', 'everysec');

test('kill -9 of Redis (AOF everysec): the bridge reconnects and nothing receipted is lost', async () => {
    const port = await freePort();
    redis = await startAofRedis(port);
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
    redis = await startAofRedis(port);
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

//  Redis 7 keeps the AOF as a base and an increment in appendonlydir
const incrementAof = () => join(data, 'appendonlydir', 'appendonly.aof.1.incr.aof');

async function killRedis () {
    const exited = new Promise((resolve) => redis.once('exit', resolve));
    redis.kill('SIGKILL');
    await exited;
}

const storedCount = (database, roomIds) => withMongo(database, (db) =>
    db.collection('messages').countDocuments({ roomId: { $in: roomIds } }));

test('an AOF that lost its tail: new messages get seqs above all MongoDB holds', async () => {
    await host?.down();
    redis?.kill('SIGKILL');
    data = mkdtempSync(join(tmpdir(), 'parley-redis-'));
    folders.push(data);
    const port = await freePort();
    redis = await startAofRedis(port);
    host = await new Host({ redisUrl: `redis://127.0.0.1:${port}` }).up();
    const token = host.token('alice', 'Alice');
    const rooms = [];
    for (let k = 0; k < 4; k++) rooms.push((await host.createRoom(token, { kind: 'direct', members: [`bob${k}`] })).id);
    const alice = await host.stomp(token);
    const send = async (from, to) => {
        for (let i = from; i <= to; i++)
            for (const room of rooms) assert.equal(await sendWithReceipt(alice, room, `m ${i}`, `${room}-${i}`), i);
    };
    //  50 a room, stored and on disk: where the AOF will end
    await send(1, 50);
    await waitFor('50 a room stored', async () => await storedCount(host.database, rooms) === 200, 30000);
    await sleep(1500);
    const kept = statSync(incrementAof()).size;
    //  30 more a room, stored in MongoDB, then lost from Redis
    await send(51, 80);
    await waitFor('80 a room stored', async () => await storedCount(host.database, rooms) === 320, 30000);
    await sleep(1500);
    await killRedis();
    truncateSync(incrementAof(), kept);
    redis = await startAofRedis(port);
    await waitFor('the host ready again', async () => (await fetch(`${host.base}/readyz`)).status === 200, 20000);
    //  The counters came back at 50; the next seqs still follow 80, and a
    //  message sent again whose clientMsgId Redis lost gets its seq (in the
    //  first room before anything new, in the others after)
    const sendOnce = async (room, content, clientMsgId) => {
        for (let tries = 0; tries < 50; tries++) {
            try { return await sendWithReceipt(alice, room, content, clientMsgId); } catch { await sleep(100); }
        }
        return null;
    };
    assert.equal(await sendOnce(rooms[0], 'm 60', `${rooms[0]}-60`), 60, 'a retry first gets its seq');
    for (const room of rooms)
        assert.equal(await sendOnce(room, 'after the loss', `${room}-after`), 81, `${room}: the first seq after the loss`);
    for (const room of rooms.slice(1))
        assert.equal(await sendOnce(room, 'm 70', `${room}-70`), 70, 'a retry after new ones gets its seq');
    await send(82, 90);
    await waitFor('90 a room stored', async () => await storedCount(host.database, rooms) === 360, 30000);
    await withMongo(host.database, async (db) => {
        for (const room of rooms) {
            const seqs = (await db.collection('messages').find({ roomId: room }).toArray()).map((m) => m.seq);
            assert.deepEqual(seqs.sort((a, b) => a - b), Array.from({ length: 90 }, (_, i) => i + 1), room);
        }
    });
    //  Nothing dead-lettered as a seq already taken
    assert.equal(redisCli(port, 'xlen', `${host.prefix}:dead`), '0');
    await waitFor('the raised counters counted', async () =>
        /parley_bridge_seq_counters_raised_total\S* [1-9]/.test(await (await fetch(`${host.base}/metrics`)).text()));
    await alice.deactivate();
});
