//  Failover through Redis Sentinel (issue 12): a primary, its replica and a
//  Sentinel that watches them; two hosts with redis-sentinel-master and
//  redis-min-replicas 1 find the primary through the Sentinel. 2,000
//  messages over 20 rooms (failover-load.mjs); mid-stream the primary
//  dies (kill -9), the Sentinel promotes the replica, the bridges follow,
//  the old primary comes back and the Sentinel makes it a replica; then a
//  switchover (SENTINEL FAILOVER) makes it the primary again.
//  Every receipted message is in MongoDB once, with the seq its RECEIPT
//  named, and every subscriber has it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, freePort, redisCli, replicaLinked, sleep, startRedis, waitFor } from './harness.mjs';
import { FailoverLoad } from './failover-load.mjs';

const KILL_AFTER = 600;         //  receipts before the primary dies

const dir = mkdtempSync(join(tmpdir(), 'parley-sentinel-'));
const servers = [];
const hosts = [];
let load;
after(async () => {
    await load?.stop();
    for (const host of hosts) await host.down();
    for (const child of servers) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
});

//  A redis-server with AOF, its files in a folder of its own
async function startServer (port, ...args) {
    const folder = join(dir, String(port));
    mkdirSync(folder, { recursive: true });
    const child = await startRedis(port, folder, '--appendonly', 'yes', ...args);
    servers.push(child);
    return child;
}

//  A Sentinel (redis-server --sentinel) that watches primary as 'pm', and
//  decides alone (quorum 1) after 1 s without an answer
async function startSentinel (primary) {
    const port = await freePort();
    const file = join(dir, 'sentinel.conf');
    writeFileSync(file, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
        `sentinel monitor pm 127.0.0.1 ${primary} 1`, 'sentinel down-after-milliseconds pm 1000',
        'sentinel failover-timeout pm 10000', ''].join('\n'));
    servers.push(spawn('redis-server', [file, '--sentinel', '--logfile', join(dir, 'sentinel.log')], { stdio: 'ignore' }));
    await waitFor('the Sentinel up', () => redisCli(port, 'ping') === 'PONG');
    return port;
}

const primaryOf = (sentinel) => Number(redisCli(sentinel, 'sentinel', 'get-master-addr-by-name', 'pm').split('\n')[1]);

test('kill -9 of the primary that Sentinel watches: nothing receipted is lost, no seq twice', async () => {
    const primary = await freePort();
    const replica = await freePort();
    const primaryChild = await startServer(primary);
    await startServer(replica, '--replicaof', '127.0.0.1', String(primary));
    await waitFor('the replica linked', () => replicaLinked(replica));
    const sentinel = await startSentinel(primary);
    await waitFor('the Sentinel knows the replica', () =>
        redisCli(sentinel, 'sentinel', 'replicas', 'pm').includes(String(replica)));

    const redisUrl = `redis://127.0.0.1:${sentinel}`;
    const extra = ['--redis-sentinel-master', 'pm', '--redis-min-replicas', '1', '--redis-wait-timeout-ms', '500'];
    const a = await new Host({ hostId: 'sa', redisUrl, extra }).up();
    hosts.push(a);
    const b = await a.sibling('sb', { redisUrl, extra });
    hosts.push(b);
    load = await new FailoverLoad({ sendHost: a, stayHost: b, resumeHost: a, pauseMs: 150 }).setup();
    load.start();

    await waitFor(`${KILL_AFTER} receipts`, () => load.receipted >= KILL_AFTER, 60000);
    const killedAt = Date.now();
    primaryChild.kill('SIGKILL');
    await load.leave();
    await sleep(300);
    load.resume();
    await waitFor('the Sentinel promoted the replica', () => primaryOf(sentinel) === replica, 30000);
    const promotedAfter = Date.now() - killedAt;
    //  Back on its AOF, the old primary is made the new one's replica (or,
    //  should the Sentinel fail over again, the other way round)
    await startServer(primary);
    await waitFor('a replica linked to the primary again', () =>
        replicaLinked(primaryOf(sentinel) === replica ? primary : replica), 40000);
    const replicatedAfter = Date.now() - killedAt;
    //  A switchover while the SENDs go on (SENTINEL FAILOVER, asked again
    //  until the Sentinel has a replica it trusts): the old primary is the
    //  primary again, the bridges follow once more
    await waitFor('switched over', () => primaryOf(sentinel) === primary
        || (redisCli(sentinel, 'sentinel', 'failover', 'pm') && false), 40000);
    const switchedAfter = Date.now() - killedAt;
    await load.sent();
    const doneAfter = Date.now() - killedAt;
    const summary = await load.check(a.database, [a, b]);
    for (const host of [a, b])
        assert.match(host.log('bridge'), new RegExp(`the primary of 'pm' is 127.0.0.1:${replica}, was another`));
    console.log(`sentinel failover: promoted after ${promotedAfter} ms, replicated again after ` +
        `${replicatedAfter} ms, switched back after ${switchedAfter} ms, senders done ${doneAfter} ms ` +
        `after the kill; ${summary}; ` +
        `seq floors checked ${await a.counter('parley_bridge_seq_floor_checks_total')}, ` +
        `counters raised ${await a.counter('parley_bridge_seq_counters_raised_total')}`);
});
