//  The whole pipeline against a Redis Cluster of three masters (Debian's
//  redis-server, joined with redis-cli --cluster create): shard streams
//  spread over the nodes, two hosts exchange messages, all stored once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, collect, redisCli, sendWithReceipt, startCluster, waitFor, withMongo } from './harness.mjs';

const dir = mkdtempSync(join(tmpdir(), 'parley-cluster-'));
const nodes = [];
const hosts = [];
after(async () => {
    for (const host of hosts) await host.down();
    for (const { child } of nodes) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
});

test('two hosts on a Redis Cluster of three masters', async () => {
    const cluster = await startCluster(dir, { masters: 3 });
    nodes.push(...cluster.nodes);
    const ports = cluster.nodes.map(({ port }) => port);
    const url = cluster.url;
    const extra = ['--redis-cluster', 'true', '--shards', '6'];
    const a = await new Host({ hostId: 'ca', redisUrl: url, extra }).up();
    hosts.push(a);
    const b = await new Host({ hostId: 'cb', redisUrl: url, extra, prefix: a.prefix, database: a.database, secret: a.secret }).up();
    hosts.push(b);

    //  The shard streams are spread over all three masters
    const owners = new Set();
    for (let shard = 0; shard < 6; shard++) {
        const slot = Number(redisCli(ports[0], 'CLUSTER', 'KEYSLOT', `${a.prefix}:{${shard}}:stream`));
        const owner = ports.find((port) => redisCli(port, 'CLUSTER', 'COUNTKEYSINSLOT', String(slot)) !== '0');
        owners.add(owner);
    }
    assert.equal(owners.size, 3, 'shard streams on all three masters');

    const rooms = [];
    for (let r = 0; r < 6; r++) {
        const room = await a.createRoom(a.token(`a${r}`), { kind: 'direct', members: [`b${r}`] });
        const sender = await a.stomp(a.token(`a${r}`));
        const reader = await b.stomp(b.token(`b${r}`));
        rooms.push({ room, sender, reader, seen: await collect(reader, room.id) });
    }
    await Promise.all(rooms.flatMap(({ room, sender }) =>
        Array.from({ length: 50 }, (_, i) => sendWithReceipt(sender, room.id, `m${i}`))));
    for (const { seen } of rooms) {
        await waitFor('delivery on host B', () => seen.length === 50, 20000);
        assert.deepEqual(seen.map((m) => m.body.seq), Array.from({ length: 50 }, (_, i) => i + 1));
    }
    await waitFor('all 300 stored once', () => withMongo(a.database, async (db) =>
        (await db.collection('messages').countDocuments({})) === 300), 30000);
    await Promise.all(rooms.flatMap(({ sender, reader }) => [sender.deactivate(), reader.deactivate()]));
});
