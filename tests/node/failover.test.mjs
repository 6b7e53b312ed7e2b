//  Failover without loss (issue 12): a Redis Cluster of three masters with
//  a replica each, two hosts with redis-min-replicas 1. 2,000 messages
//  over 20 rooms; mid-stream a master dies (kill -9), its replica takes
//  over; the rooms of the other masters go on; the dead one comes back as
//  a replica. Senders retry with the same clientMsgId until they have a
//  RECEIPT. Every receipted message is in MongoDB once, with the seq its RECEIPT named, seqs per room are 1..100,
//  and every subscriber, the ones that stayed and the ones that left and
//  resumed with since-seq, has every message once, in order.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Host, collect, redisCli, replicaLinked, sendWithReceipt, sleep, startCluster,
    startClusterNode, waitFor, withMongo } from './harness.mjs';

const ROOMS = 20;
const PER_ROOM = 100;
const KILL_AFTER = 600;         //  receipts before the master dies

const dir = mkdtempSync(join(tmpdir(), 'parley-failover-'));
const nodes = [];
const hosts = [];
const clients = [];
const followers = [];
let stopping = false;           //  a failed test: the senders give up
after(async () => {
    stopping = true;
    for (const follower of followers) follower.stop = true;
    await Promise.all(followers.map((follower) => follower.done));
    await Promise.all(clients.map((client) => client.deactivate().catch(() => {})));
    for (const host of hosts) await host.down();
    for (const { child } of nodes) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
});

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

//  Rejects once the client got an ERROR or lost its connection
function broken (client) {
    let timer;
    const promise = new Promise((resolve, reject) => {
        timer = setInterval(() => {
            if (client.closed || client.errors.length)
                reject(new Error(client.errors[0]?.headers.message ?? 'connection closed'));
        }, 20);
    });
    return { promise, stop: () => clearInterval(timer) };
}

//  Send until a RECEIPT comes: after an ERROR (503: Redis failing over,
//  replicas not confirming) or a lost connection, a new connection and the
//  same clientMsgId. Resolves with the seq the RECEIPT names.
async function sendSurely (sender, content, clientMsgId) {
    while (!stopping) {
        if (!sender.client || sender.client.closed || sender.client.errors.length) {
            sender.client?.deactivate().catch(() => {});
            try {
                sender.client = await sender.host.stomp(sender.token);
                clients.push(sender.client);
            } catch {
                await sleep(100);
                continue;
            }
        }
        const watch = broken(sender.client);
        try {
            return await Promise.race([sendWithReceipt(sender.client, sender.room, content, clientMsgId),
                watch.promise]);
        } catch (error) {
            sender.refusals.push(error.message);
            await sleep(50);
        } finally {
            watch.stop();
        }
    }
    throw new Error('the test stopped');
}

//  A subscriber that resumes: SUBSCRIBE with since-seq the last seq it
//  has; an ERROR (a resume while Redis fails over is told to try again)
//  or a lost connection, and it subscribes again from there, as an app
//  with @stomp/stompjs does. Every message goes to seen.
function follow (host, token, roomId, seen) {
    const state = { stop: false, errors: [] };
    followers.push(state);
    state.done = (async () => {
        while (!state.stop) {
            let client;
            try {
                client = await host.stomp(token);
                clients.push(client);
                const receipt = `s-${randomUUID()}`;
                const confirmed = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
                client.subscribe(`/topic/rooms/${roomId}`, (message) => seen.push(JSON.parse(message.body)),
                    { receipt, 'since-seq': String(seen.findLast((body) => body.seq)?.seq ?? 0) });
                const watch = broken(client);
                try {
                    await Promise.race([confirmed, watch.promise]);
                } finally {
                    watch.stop();
                }
                while (!state.stop && !client.closed && !client.errors.length) await sleep(20);
                if (client.errors.length) state.errors.push(client.errors[0].headers.message);
            } catch (error) {
                state.errors.push(error.message);
            }
            await client?.deactivate().catch(() => {});
            if (!state.stop) await sleep(100);
        }
    })();
    return state;
}

//  The master that holds the most of the hosts' shard streams
function busiestMaster (ports, prefix) {
    const count = new Map();
    for (let shard = 0; shard < 6; shard++) {
        const slot = redisCli(ports[0], 'cluster', 'keyslot', `${prefix}:{${shard}}:stream`);
        const owner = ports.find((port) => redisCli(port, 'role').startsWith('master')
            && redisCli(port, 'cluster', 'countkeysinslot', slot) !== '0');
        if (owner) count.set(owner, (count.get(owner) ?? 0) + 1);
    }
    return [...count.entries()].sort((x, y) => y[1] - x[1])[0][0];
}

test('kill -9 of a master mid-stream: nothing receipted is lost, no seq twice', async () => {
    const nodeArgs = ['--cluster-node-timeout', '1000'];
    const cluster = await startCluster(dir, { masters: 3, replicas: 1, args: nodeArgs });
    nodes.push(...cluster.nodes);
    const ports = cluster.nodes.map(({ port }) => port);
    const extra = ['--redis-cluster', 'true', '--shards', '6', '--redis-min-replicas', '1',
        '--redis-wait-timeout-ms', '500'];
    const a = await new Host({ hostId: 'fa', redisUrl: cluster.url, extra }).up();
    hosts.push(a);
    const b = await a.sibling('fb', { redisUrl: cluster.url, extra });
    hosts.push(b);

    //  Per room: a sender on A, a subscriber on B that stays, one on A that
    //  leaves when the master dies and resumes
    const rooms = [];
    for (let r = 0; r < ROOMS; r++) {
        const token = a.token(`s${r}`);
        const room = (await a.createRoom(token, { kind: 'group', name: `failover ${r}`,
            members: [`b${r}`, `c${r}`] })).id;
        const stayed = await b.stomp(b.token(`b${r}`));
        const leaving = await a.stomp(a.token(`c${r}`));
        clients.push(stayed, leaving);
        rooms.push({ room, seq: [], stayed: await collect(stayed, room), leaving,
            before: await collect(leaving, room),
            sender: { host: a, token, room, client: null, refusals: [] } });
    }

    let receipted = 0;
    const sending = rooms.map(async (room, r) => {
        for (let i = 0; i < PER_ROOM; i++) {
            room.seq[i] = await sendSurely(room.sender, `r${r} m${i}`, `r${r}-m${i}`);
            receipted++;
            await sleep(15);
        }
    });

    await waitFor(`${KILL_AFTER} receipts`, () => receipted >= KILL_AFTER, 60000);
    const victim = busiestMaster(ports, a.prefix);
    const replica = ports.find((port) => port !== victim
        && redisCli(port, 'info', 'replication').includes(`master_port:${victim}`));
    const killedAt = Date.now();
    const victimNode = nodes.find(({ port }) => port === victim);
    victimNode.child.kill('SIGKILL');
    //  The leaving subscribers go now, and come back while Redis fails over
    for (const room of rooms) await room.leaving.deactivate();
    await sleep(300);
    for (const [r, room] of rooms.entries()) {
        room.resumed = room.before.map((m) => m.body);
        room.follower = follow(a, a.token(`c${r}`), room.room, room.resumed);
    }
    await waitFor('the replica promoted', () => redisCli(replica, 'role').startsWith('master'), 30000);
    const promotedAfter = Date.now() - killedAt;
    //  The rooms of the other masters go on before the dead one is back
    const atPromotion = receipted;
    await waitFor('receipts without the dead master', () => receipted >= atPromotion + 200, 20000);
    //  The dead master comes back (nodes.conf, AOF) as its replica's
    //  replica: until then the new master has no replica, and
    //  redis-min-replicas 1 refuses every SEND to its rooms
    victimNode.child = await startClusterNode(dir, victim, ...nodeArgs);
    await waitFor('the old master is a replica', () => replicaLinked(victim), 30000);
    const replicatedAfter = Date.now() - killedAt;

    let deadline;
    await Promise.race([Promise.all(sending), new Promise((resolve, reject) => {
        deadline = setTimeout(() => reject(new Error(`not all receipted 60 s after the kill: ${receipted}`)), 60000);
    })]).finally(() => clearTimeout(deadline));
    const doneAfter = Date.now() - killedAt;
    for (const [r, room] of rooms.entries()) {
        //  One sender per room: every message has the seq of its place
        assert.deepEqual(room.seq, range(1, PER_ROOM), `room ${r}: receipted seqs`);
        await waitFor(`room ${r}: the subscriber that stayed has all`,
            () => room.stayed.some((m) => m.body.seq === PER_ROOM), 30000);
        await waitFor(`room ${r}: the resumed subscriber has all`,
            () => room.resumed.some((m) => m.seq === PER_ROOM), 30000);
    }
    await sleep(300);
    for (const room of rooms) room.follower.stop = true;
    await Promise.all(rooms.map((room) => room.follower.done));
    for (const [r, room] of rooms.entries()) {
        const contents = range(0, PER_ROOM - 1).map((i) => `r${r} m${i}`);
        //  Messages only: ENTER and LEAVE of the resuming member come too
        const stayed = room.stayed.map((m) => m.body).filter((body) => body.seq);
        assert.deepEqual(stayed.map((m) => m.seq), range(1, PER_ROOM), `room ${r}: stayed`);
        assert.deepEqual(stayed.map((m) => m.content), contents);
        room.resumed = room.resumed.filter((body) => body.seq);
        assert.deepEqual(room.resumed.map((m) => m.seq), range(1, PER_ROOM), `room ${r}: resumed`);
        assert.deepEqual(room.resumed.map((m) => m.content), contents);
    }
    await waitFor('all 2000 stored', () => withMongo(a.database, async (db) =>
        (await db.collection('messages').countDocuments({})) === ROOMS * PER_ROOM), 60000);
    await withMongo(a.database, async (db) => {
        for (const [r, room] of rooms.entries()) {
            const stored = await db.collection('messages').find({ roomId: room.room }).sort({ seq: 1 }).toArray();
            assert.deepEqual(stored.map((m) => m.seq), range(1, PER_ROOM), `room ${r}: stored seqs`);
            assert.deepEqual(stored.map((m) => m.clientMsgId), range(0, PER_ROOM - 1).map((i) => `r${r}-m${i}`));
        }
    });
    for (const host of [a, b])
        assert.equal(await host.counter('parley_bridge_dead_lettered_total'), 0, `${host.hostId}: dead letters`);
    const refusals = rooms.flatMap((room) => room.sender.refusals);
    const resumeErrors = rooms.flatMap((room) => room.follower.errors);
    console.log(`failover: promoted after ${promotedAfter} ms, replicated again after ${replicatedAfter} ms, ` +
        `senders done ${doneAfter} ms after the kill; ${refusals.length} sends refused and sent again ` +
        `(${new Set(refusals.map((text) => text.replace(/\d+/g, 'N'))).size} kinds: ` +
        `${[...new Set(refusals.map((text) => text.replace(/\d+/g, 'N')))].join('; ')}); ` +
        `seq floors checked ${await a.counter('parley_bridge_seq_floor_checks_total')}, ` +
        `counters raised ${await a.counter('parley_bridge_seq_counters_raised_total')}; ` +
        `${resumeErrors.length} resumes subscribed again (${[...new Set(resumeErrors)].join('; ')})`);
});
