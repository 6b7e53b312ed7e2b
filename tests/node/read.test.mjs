//  Read status across two hosts: a READ moves the sender's cursor forward
//  only, never past the room's last seq; every member on every host gets
//  READ_STATUS; MongoDB keeps the cursor (GET /api/rooms/{id} readSeq);
//  a rejected READ is an ERROR event, not the end of the session.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, sendWithReceipt, sleep, userEvents as events, waitFor, withMongo, randomUUID } from './harness.mjs';

const hosts = [];
after(async () => { for (const host of hosts) await host.down(); });

//  Send a READ; resolves with the RECEIPT's seq, or with the ERROR event
//  that names this READ's receipt
function sendRead (client, events, roomId, body) {
    const receipt = `read-${randomUUID()}`;
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer to READ ${JSON.stringify(body)}`)), 20000).unref();
        client.watchForReceipt(receipt, (frame) => { clearTimeout(timer); resolve({ seq: Number(frame.headers.seq) }); });
        events.waiters.set(receipt, (event) => { clearTimeout(timer); resolve({ error: event }); });
        client.publish({ destination: `/app/rooms/${roomId}`, headers: { receipt },
                         body: JSON.stringify({ type: 'READ', ...body }) });
    });
}

const statuses = (list) => list.filter((m) => m.body.type === 'READ_STATUS').map((m) => m.body);

test('READ across two hosts: forward only, READ_STATUS everywhere, stored', async () => {
    const a = await new Host({ hostId: 'ra' }).up();
    hosts.push(a);
    const b = await a.sibling('rb');
    hosts.push(b);
    const room = await a.createRoom(a.token('alice', 'Alice'), { kind: 'group', name: 'reads', members: ['bob', 'carol'] });
    const alice = await a.stomp(a.token('alice', 'Alice'));
    const bob = await b.stomp(b.token('bob', 'Bob'));
    const carolOnA = await a.stomp(a.token('carol', 'Carol'));
    const carolOnB = await b.stomp(b.token('carol', 'Carol'));
    const seen = await Promise.all([alice, bob, carolOnA, carolOnB].map((client) => collect(client, room.id)));
    const bobEvents = await events(bob);
    for (let i = 0; i < 10; i++) await sendWithReceipt(alice, room.id, `message ${i}`);

    assert.deepEqual(await sendRead(bob, bobEvents, room.id, { seq: 4 }), { seq: 4 });
    const expected = { type: 'READ_STATUS', roomId: room.id, readerId: 'bob', seq: 4 };
    await waitFor('READ_STATUS on both hosts', () => seen.every((list) => statuses(list).length === 1), 10000);
    for (const list of seen) {
        assert.deepEqual(statuses(list), [expected]);
        const status = list.find((m) => m.body.type === 'READ_STATUS');
        assert.equal(status.headers.seq, undefined, 'an event carries no seq header');
        assert.match(status.headers['message-id'], /:e\d+$/);
    }

    //  Backwards or repeated: nothing moves, the receipt names the cursor
    assert.deepEqual(await sendRead(bob, bobEvents, room.id, { seq: 2 }), { seq: 4 });
    assert.deepEqual(await sendRead(bob, bobEvents, room.id, { seq: 4 }), { seq: 4 });
    //  Past the room's last message, or no seq: an ERROR event, the session goes on
    const past = await sendRead(bob, bobEvents, room.id, { seq: 11 });
    assert.equal(past.error.type, 'ERROR');
    assert.equal(past.error.roomId, room.id);
    assert.match(past.error.message, /past the room's last message \(10\)/);
    const bad = await sendRead(bob, bobEvents, room.id, { seq: 'x' });
    assert.match(bad.error.message, /READ needs "seq"/);
    //  Not a member: the same kind of answer, nothing else changes
    const dave = await a.stomp(a.token('dave', 'Dave'));
    const daveEvents = await events(dave);
    const foreign = await sendRead(dave, daveEvents, room.id, { seq: 1 });
    assert.equal(foreign.error.type, 'ERROR');
    assert.ok(!bob.closed && bob.errors.length === 0 && !dave.closed && dave.errors.length === 0);

    //  A burst is delivered in order and stored as the highest
    const answers = [];
    for (let seq = 5; seq <= 10; seq++) answers.push(sendRead(bob, bobEvents, room.id, { seq }));
    assert.deepEqual((await Promise.all(answers)).map((answer) => answer.seq), [5, 6, 7, 8, 9, 10]);
    await waitFor('the burst everywhere', () => seen.every((list) => statuses(list).length === 7), 10000);
    for (const list of seen)
        assert.deepEqual(statuses(list).map((status) => status.seq), [4, 5, 6, 7, 8, 9, 10]);
    await sleep(300);
    assert.ok(seen.every((list) => statuses(list).length === 7), 'no READ_STATUS for what did not move');

    let last;
    await waitFor('readSeq in MongoDB', async () => {
        const answer = await b.http('GET', `/api/rooms/${room.id}`, b.token('carol', 'Carol'));
        last = answer.text;
        return answer.status === 200 && answer.json.readSeq.bob === 10 && answer.json.readSeq.alice === 0;
    }, 20000).catch((error) => {
        throw new Error(`${error.message}: ${last}\n${a.log('store-0')}\n${b.log('store-0')}\n${a.log('bridge')}`);
    });
    //  READs are not messages
    assert.equal(await withMongo(a.database, (db) => db.collection('messages').countDocuments({ roomId: room.id })), 10);
    //  Bob's READs and ERROR events on host B (status records come each second)
    await waitFor('counted in /metrics', async () => await b.counter('parley_conn_reads_total') >= 9
        && await b.counter('parley_conn_event_errors_total') >= 2, 5000);
    await Promise.all([alice, bob, carolOnA, carolOnB, dave].map((client) => client.deactivate()));
});

test('read cursors survive a restart of the persistence actor and the bridge', async () => {
    const [a] = hosts;
    const room = await a.createRoom(a.token('erin', 'Erin'), { kind: 'direct', members: ['frank'] });
    const erin = await a.stomp(a.token('erin', 'Erin'));
    const frank = await a.stomp(a.token('frank', 'Frank'));
    const frankEvents = await events(frank);
    for (let i = 0; i < 5; i++) await sendWithReceipt(erin, room.id, `m ${i}`);
    await sendRead(frank, frankEvents, room.id, { seq: 3 });
    await a.kill('store-0');
    await a.kill('bridge');
    a.start('bridge');
    a.start('store-0');
    await waitFor('readSeq after the restarts', async () => {
        const answer = await a.http('GET', `/api/rooms/${room.id}`, a.token('erin', 'Erin'));
        return answer.status === 200 && answer.json.readSeq.frank === 3;
    }, 30000);
    //  Redis still knows the cursor: a READ behind it moves nothing
    const again = await a.stomp(a.token('frank', 'Frank'));
    const againEvents = await events(again);
    assert.deepEqual(await sendRead(again, againEvents, room.id, { seq: 2 }), { seq: 3 });
    await Promise.all([erin, frank, again].map((client) => client.deactivate()));
});
