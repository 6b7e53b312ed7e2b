//  Several hosts against one Redis and one MongoDB behave as one chat
//  service: a subscriber on host B gets what a client on host A sends, in
//  the same seq order as subscribers on A.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, sendWithReceipt, waitFor, withMongo } from './harness.mjs';

const hosts = [];
after(async () => { for (const host of hosts) await host.down(); });

test('two hosts: every subscriber on either host sees every message in one order', async () => {
    const a = await new Host({ hostId: 'ha' }).up();
    hosts.push(a);
    const b = await a.sibling('hb');
    hosts.push(b);

    const room = await a.createRoom(a.token('alice', 'Alice'), { kind: 'group', name: 'two hosts', members: ['bob', 'carol'] });
    const alice = await a.stomp(a.token('alice', 'Alice'));
    const bob = await b.stomp(b.token('bob', 'Bob'));
    const carolOnA = await a.stomp(a.token('carol', 'Carol'));
    const carolOnB = await b.stomp(b.token('carol', 'Carol'));
    const seen = await Promise.all([alice, bob, carolOnA, carolOnB].map((client) => collect(client, room.id)));

    const TOTAL = 400;
    const receipts = [];
    for (let i = 0; i < TOTAL; i++)
        receipts.push(sendWithReceipt(i % 2 ? bob : alice, room.id, `message ${i}`));
    await Promise.all(receipts);
    await waitFor('delivery everywhere', () => seen.every((list) => list.length >= TOTAL), 60000);
    const expected = Array.from({ length: TOTAL }, (_, i) => i + 1);
    for (const list of seen) {
        assert.deepEqual(list.map((m) => m.body.seq), expected);
        assert.deepEqual(list.map((m) => m.body.content), seen[0].map((m) => m.body.content));
    }
    await waitFor('stored once', () => withMongo(a.database,
        async (db) => (await db.collection('messages').countDocuments({ roomId: room.id })) === TOTAL), 30000);
    await Promise.all([alice, bob, carolOnA, carolOnB].map((client) => client.deactivate()));
});

test('a host that restarts continues its fan-out group where it stopped', async () => {
    const [a, b] = hosts;
    const room = await a.createRoom(a.token('dave', 'Dave'), { kind: 'direct', members: ['erin'] });
    const dave = await a.stomp(a.token('dave', 'Dave'));
    await sendWithReceipt(dave, room.id, 'before');
    //  Host B's bridge goes away; messages sent meanwhile wait in its group
    await b.kill('bridge', 'SIGTERM');
    for (let i = 0; i < 20; i++) await sendWithReceipt(dave, room.id, `while away ${i}`);
    const erin = await b.stomp(b.token('erin', 'Erin'));
    const erinSees = await collect(erin, room.id);
    b.start('bridge');
    await sendWithReceipt(dave, room.id, 'after');
    //  Erin subscribed while the bridge was down: the entries of those 20
    //  reach host B's router when its bridge continues the group
    await waitFor('the backlog and the new message', () => erinSees.some((m) => m.body.content === 'after'), 20000);
    const seqs = erinSees.map((m) => m.body.seq);
    assert.deepEqual(seqs, Array.from({ length: 21 }, (_, i) => i + 2), 'seq 2..22 in order, nothing skipped');
    await dave.deactivate();
    await erin.deactivate();
});

test('a member added on one host may subscribe and send on another at once', async () => {
    const [a, b] = hosts;
    const owner = a.token('owner', 'Owner');
    const room = await a.createRoom(owner, { kind: 'group', name: 'growing', members: ['member1'] });
    //  Host B learns the member list while frank is not in it
    const frankOnB = await b.stomp(b.token('frank', 'Frank'));
    const refused = new Promise((resolve) => { frankOnB.onStompError = resolve; });
    frankOnB.subscribe(`/topic/rooms/${room.id}`, () => {});
    assert.match((await refused).headers.message, /not a member/);

    //  Added through host A's HTTP API: host B's router hears of it
    const added = await a.http('POST', `/api/rooms/${room.id}/members`, owner, { userId: 'frank' });
    assert.equal(added.status, 200, added.text);
    const frank = await b.stomp(b.token('frank', 'Frank'));
    await waitFor('frank may subscribe on host B', async () => {
        try {
            const sees = await collect(frank, room.id);
            frank.sees = sees;
            return true;
        } catch { return false; }
    }, 10000);
    assert.equal(await sendWithReceipt(frank, room.id, 'hello from B'), 1);
    await waitFor('frank sees his own message', () => frank.sees.length === 1);
    await frank.deactivate();
});
