//  The whole pipeline against a Redis Cluster of three masters (Debian's
//  redis-server, joined with redis-cli --cluster create): shard streams
//  spread over the nodes, two hosts exchange messages, all stored once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { Host, collect, sendWithReceipt, waitFor, withMongo } from './harness.mjs';

const dir = mkdtempSync(join(tmpdir(), 'parley-cluster-'));
const nodes = [];
const hosts = [];
after(async () => {
    for (const host of hosts) await host.down();
    for (const node of nodes) node.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
});

//  A node also listens on port + 10000 (the cluster bus)
async function clusterPort () {
    const free = (port) => new Promise((resolve) => {
        const server = net.createServer();
        server.once('error', () => resolve(false));
        server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    for (;;) {
        const port = 20000 + Math.floor(Math.random() * 20000);
        if (await free(port) && await free(port + 10000)) return port;
    }
}

const cli = (port, ...args) => execFileSync('redis-cli', ['-p', String(port), ...args]).toString().trim();

test('two hosts on a Redis Cluster of three masters', async () => {
    const ports = [];
    for (let i = 0; i < 3; i++) {
        const port = await clusterPort();
        const folder = join(dir, String(port));
        mkdirSync(folder);
        nodes.push(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', folder,
            '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--appendonly', 'yes',
            '--save', ''], { stdio: 'ignore' }));
        ports.push(port);
    }
    for (const port of ports)
        await waitFor('node up', () => { try { return cli(port, 'PING') === 'PONG'; } catch { return false; } });
    execFileSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`),
        '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'ignore' });
    for (const port of ports)
        await waitFor('cluster ok', () => cli(port, 'CLUSTER', 'INFO').includes('cluster_state:ok'));

    const url = `redis://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`;
    const extra = ['--redis-cluster', 'true', '--shards', '6'];
    const a = await new Host({ hostId: 'ca', redisUrl: url, extra }).up();
    hosts.push(a);
    const b = await new Host({ hostId: 'cb', redisUrl: url, extra, prefix: a.prefix, database: a.database, secret: a.secret }).up();
    hosts.push(b);

    //  The shard streams are spread over all three masters
    const owners = new Set();
    for (let shard = 0; shard < 6; shard++) {
        const slot = Number(cli(ports[0], 'CLUSTER', 'KEYSLOT', `${a.prefix}:{${shard}}:stream`));
        const owner = ports.find((port) => cli(port, 'CLUSTER', 'COUNTKEYSINSLOT', String(slot)) !== '0');
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
