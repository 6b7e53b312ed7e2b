//  TYPING across two hosts: the room's other sessions get it on every
//  host, the sender's own do not; nothing reaches a stream or MongoDB; over
//  typing-rate the excess is dropped silently and counted.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, sleep, userEvents, waitFor, withMongo, randomUUID } from './harness.mjs';

const hosts = [];
after(async () => { for (const host of hosts) await host.down(); });

function typing (client, roomId) {
    const receipt = `t-${randomUUID()}`;
    const answered = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
    client.publish({ destination: `/app/rooms/${roomId}`, headers: { receipt }, body: JSON.stringify({ type: 'TYPING' }) });
    return answered;
}

const typings = (list) => list.filter((m) => m.body.type === 'TYPING');

test('TYPING reaches the other sessions on both hosts and nothing durable', async () => {
    const a = await new Host({ hostId: 'ta' }).up();
    hosts.push(a);
    const b = await a.sibling('tb');
    hosts.push(b);
    const room = await a.createRoom(a.token('alice', 'Alice'), { kind: 'group', name: 'typing', members: ['bob', 'carol'] });
    const alice = await a.stomp(a.token('alice', 'Alice'));
    const aliceOnB = await b.stomp(b.token('alice', 'Alice'));
    const bob = await b.stomp(b.token('bob', 'Bob'));
    const carolOnA = await a.stomp(a.token('carol', 'Carol'));
    const carolOnB = await b.stomp(b.token('carol', 'Carol'));
    const [aliceSees, aliceOnBSees, ...others] = await Promise.all(
        [alice, aliceOnB, bob, carolOnA, carolOnB].map((client) => collect(client, room.id)));
    const appendedBefore = await a.counter('parley_bridge_appended_total') + await b.counter('parley_bridge_appended_total');

    const receipt = await typing(alice, room.id);
    assert.equal(receipt.headers.seq, undefined, 'a TYPING takes no seq');
    await waitFor('TYPING on both hosts', () => others.every((list) => typings(list).length === 1), 10000);
    for (const list of others) {
        assert.deepEqual(list[0].body, { type: 'TYPING', roomId: room.id, senderId: 'alice', senderName: 'Alice' });
        assert.equal(list[0].headers.seq, undefined);
    }
    await sleep(300);
    assert.equal(typings(aliceSees).length + typings(aliceOnBSees).length, 0, "the sender's own sessions do not get it");

    //  Never stored, never appended
    assert.equal(await withMongo(a.database, (db) => db.collection('messages').countDocuments({ roomId: room.id })), 0);
    await sleep(1100);
    assert.equal(await a.counter('parley_bridge_appended_total') + await b.counter('parley_bridge_appended_total'),
                 appendedBefore);
    assert.ok(await a.counter('parley_bridge_broadcasts_sent_total') >= 1);
    assert.ok(await b.counter('parley_bridge_broadcasts_received_total') >= 1);
    await Promise.all([alice, aliceOnB, bob, carolOnA, carolOnB].map((client) => client.deactivate()));
});

test('a TYPING flood is cut to typing-rate; a non-member gets an ERROR event', async () => {
    const [a, b] = hosts;
    const room = await a.createRoom(a.token('dan', 'Dan'), { kind: 'direct', members: ['eve'] });
    const dan = await a.stomp(a.token('dan', 'Dan'));
    const eve = await b.stomp(b.token('eve', 'Eve'));
    const eveSees = await collect(eve, room.id);
    const droppedBefore = await a.counter('parley_conn_refused_typing_rate_total');
    //  typing-burst is 3 and typing-rate 2 a second: 20 at once pass 3 or 4
    await Promise.all(Array.from({ length: 20 }, () => typing(dan, room.id)));
    await sleep(1000);
    const passed = typings(eveSees).length;
    assert.ok(passed >= 3 && passed <= 4, `${passed} of 20 passed`);
    await waitFor('drops counted', async () =>
        await a.counter('parley_conn_refused_typing_rate_total') - droppedBefore >= 16, 5000);
    assert.ok(!dan.closed && dan.errors.length === 0, 'dropping is silent');

    const mallory = await a.stomp(a.token('mallory', 'Mallory'));
    const events = await userEvents(mallory);
    mallory.publish({ destination: `/app/rooms/${room.id}`, body: JSON.stringify({ type: 'TYPING' }) });
    await waitFor('an ERROR event', () => events.length === 1, 10000);
    assert.equal(events[0].type, 'ERROR');
    assert.equal(events[0].roomId, room.id);
    await sleep(300);
    assert.equal(typings(eveSees).length, passed, 'nothing of a non-member reaches the room');
    assert.ok(!mallory.closed);
    await Promise.all([dan, eve, mallory].map((client) => client.deactivate()));
});
