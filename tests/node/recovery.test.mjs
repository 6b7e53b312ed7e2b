//  Recovery of pending persist work: entries a dead host left pending are
//  claimed by a live host and stored; an entry that keeps failing goes to
//  the dead-letter stream with its error, never silently dropped.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Host, sendWithReceipt, sleep, waitFor, withMongo } from './harness.mjs';

const hosts = [];
after(async () => { for (const host of hosts) await host.down(); });

const redisCli = (host, ...args) => {
    const { hostname, port } = new URL(host.redisUrl);
    return execFileSync('redis-cli', ['-h', hostname, '-p', port, ...args]).toString().trim();
};

test('a dead host\'s unstored entries are claimed and stored by a live host', async () => {
    const fast = ['--claim-idle-ms', '1500', '--claim-interval-ms', '300'];
    const a = await new Host({ hostId: 'ra', extra: fast }).up();
    hosts.push(a);
    const room = await a.createRoom(a.token('alice'), { kind: 'direct', members: ['bob'] });
    const alice = await a.stomp(a.token('alice'));
    //  (the first send loads the member list into the router's cache)
    await sendWithReceipt(alice, room.id, 'm1');
    await waitFor('m1 stored', () => withMongo(a.database, async (db) =>
        (await db.collection('messages').countDocuments({ roomId: room.id })) === 1));
    //  Host A's store is gone: its bridge reads the entries and holds them
    await a.kill('store-0');
    for (let i = 2; i <= 200; i++) await sendWithReceipt(alice, room.id, `m${i}`);
    await sleep(500);
    //  Then host A dies whole
    await alice.deactivate().catch(() => {});
    for (const name of ['bridge', 'router', 'conn-0']) await a.kill(name);
    let pending = 0;
    for (let shard = 0; shard < 8; shard++)
        pending += Number(redisCli(a, 'XPENDING', `${a.prefix}:{${shard}}:stream`, 'persist').split('\n')[0]) || 0;
    console.log(`# host A died with ${pending} entries pending in the persist group`);
    assert.equal(pending, 199, 'host A left its unstored entries pending');
    assert.equal(await withMongo(a.database, (db) => db.collection('messages').countDocuments({ roomId: room.id })), 1);

    //  Host B claims them after claim-idle-ms and stores each once
    const b = await new Host({ hostId: 'rb', prefix: a.prefix, database: a.database, secret: a.secret, extra: [...fast, '--persist-attempts', '2'] }).up();
    hosts.push(b);
    await waitFor('all 200 stored by host B', () => withMongo(a.database, async (db) =>
        (await db.collection('messages').countDocuments({ roomId: room.id })) === 200), 30000);
    await sleep(500);
    const docs = await withMongo(a.database, (db) => db.collection('messages').find({ roomId: room.id }).toArray());
    assert.deepEqual(docs.map((d) => d.seq).sort((x, y) => x - y), Array.from({ length: 200 }, (_, i) => i + 1));
});

test('an entry that keeps failing goes to the dead-letter stream with its error', async () => {
    const b = hosts[1];
    //  An entry no store can take (content that is not UTF-8), written
    //  straight into a shard stream as a broken producer might
    const stream = `${b.prefix}:{0}:stream`;
    execFileSync('sh', ['-c', `printf 'bad\\377' | redis-cli -h ${new URL(b.redisUrl).hostname} -p ${new URL(b.redisUrl).port} -x XADD ${stream} '*' v 1 room broken-room seq 1 type TALK sender x name X cmid '' created 0 content`]);
    await waitFor('the dead letter', () => Number(redisCli(b, 'XLEN', `${b.prefix}:dead`)) === 1, 30000);
    const dead = redisCli(b, 'XRANGE', `${b.prefix}:dead`, '-', '+');
    assert.match(dead, /broken-room/);
    assert.match(dead, /error/);
    //  Nothing of it stays pending, and the others go on
    await waitFor('not pending', () => {
        const summary = redisCli(b, 'XPENDING', stream, 'persist').split('\n');
        return Number(summary[0]) === 0;
    }, 10000);
});
