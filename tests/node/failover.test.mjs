//  Failover without loss (issue 12): a Redis Cluster of three masters with
//  a replica each, two hosts with redis-min-replicas 1. 2,000 messages
//  over 20 rooms (failover-load.mjs); mid-stream a master dies (kill -9),
//  its replica takes over; the rooms of the other masters go on; the dead
//  one comes back as a replica. Every receipted message is in MongoDB
//  once, with the seq its RECEIPT named, and every subscriber has it.
import { test, after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, redisCli, replicaLinked, sleep, startCluster, startClusterNode, waitFor } from './harness.mjs';
import { FailoverLoad } from './failover-load.mjs';

const KILL_AFTER = 600;         //  receipts before the master dies
const SHARDS = 6;

const dir = mkdtempSync(join(tmpdir(), 'parley-failover-'));
const nodes = [];
const hosts = [];
let load;
after(async () => {
    await load?.stop();
    for (const host of hosts) await host.down();
    for (const { child } of nodes) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
});

//  A room's shard, as the bridge computes it: CRC16-XMODEM of the id
function shardOf (roomId) {
    let crc = 0;
    for (const byte of Buffer.from(roomId)) {
        crc ^= byte << 8;
        for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc % SHARDS;
}

//  The master that holds the most of the hosts' shard streams, and those
function busiestMaster (ports, prefix) {
    const shards = new Map();
    for (let shard = 0; shard < SHARDS; shard++) {
        const slot = redisCli(ports[0], 'cluster', 'keyslot', `${prefix}:{${shard}}:stream`);
        const owner = ports.find((port) => redisCli(port, 'role').startsWith('master')
            && redisCli(port, 'cluster', 'countkeysinslot', slot) !== '0');
        if (owner) shards.set(owner, [...(shards.get(owner) ?? []), shard]);
    }
    const [port, held] = [...shards.entries()].sort((x, y) => y[1].length - x[1].length)[0];
    return { port, shards: new Set(held) };
}

test('kill -9 of a cluster master mid-stream: nothing receipted is lost, no seq twice', async () => {
    const nodeArgs = ['--cluster-node-timeout', '2000'];
    const cluster = await startCluster(dir, { masters: 3, replicas: 1, args: nodeArgs });
    nodes.push(...cluster.nodes);
    const ports = cluster.nodes.map(({ port }) => port);
    const extra = ['--redis-cluster', 'true', '--shards', String(SHARDS), '--redis-min-replicas', '1',
        '--redis-wait-timeout-ms', '500'];
    const a = await new Host({ hostId: 'fa', redisUrl: cluster.url, extra }).up();
    hosts.push(a);
    const b = await a.sibling('fb', { redisUrl: cluster.url, extra });
    hosts.push(b);
    load = await new FailoverLoad({ sendHost: a, stayHost: b, resumeHost: a }).setup();
    load.start();

    await waitFor(`${KILL_AFTER} receipts`, () => load.receipted >= KILL_AFTER, 60000);
    const { port: victim, shards: victimShards } = busiestMaster(ports, a.prefix);
    const replica = ports.find((port) => port !== victim
        && redisCli(port, 'info', 'replication').includes(`master_port:${victim}`));
    const killedAt = Date.now();
    const victimNode = nodes.find(({ port }) => port === victim);
    victimNode.child.kill('SIGKILL');
    //  The leaving subscribers go now, and come back while Redis fails over
    await load.leave();
    await sleep(300);
    load.resume();
    await waitFor('the replica promoted', () => redisCli(replica, 'role').startsWith('master'), 30000);
    const promotedAfter = Date.now() - killedAt;
    //  The rooms of the other masters are all through before the dead one
    //  is back
    const others = load.rooms.filter((room) => !victimShards.has(shardOf(room.id)));
    await waitFor('the rooms of the other masters done without the dead one', () =>
        others.every((room) => room.seq.filter(Boolean).length === load.perRoom), 30000);
    //  The dead master comes back (nodes.conf, AOF) as its replica's
    //  replica: until then the new master has no replica, and
    //  redis-min-replicas 1 refuses every SEND to its rooms
    victimNode.child = await startClusterNode(dir, victim, ...nodeArgs);
    await waitFor('the old master is a replica', () => replicaLinked(victim), 30000);
    const replicatedAfter = Date.now() - killedAt;
    await load.sent();
    const doneAfter = Date.now() - killedAt;
    const summary = await load.check(a.database, [a, b]);
    console.log(`cluster failover: promoted after ${promotedAfter} ms, replicated again after ` +
        `${replicatedAfter} ms, senders done ${doneAfter} ms after the kill; ${summary}; ` +
        `seq floors checked ${await a.counter('parley_bridge_seq_floor_checks_total')}, ` +
        `counters raised ${await a.counter('parley_bridge_seq_counters_raised_total')}`);
});
