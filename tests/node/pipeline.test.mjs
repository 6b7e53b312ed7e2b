//  The core pipeline on one host: two users of a direct room exchange 1,000
//  messages through all four actors, Redis Streams and MongoDB.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, sendWithReceipt, waitFor, withMongo, randomUUID } from './harness.mjs';

const TOTAL = 1000;
let host;

before(async () => { host = await new Host().up(); });
after(async () => { await host?.down(); });

//  Every subscriber sees seq 1..n once each, in order.
function assertGapless (received, count, label) {
    assert.equal(received.length, count, `${label}: ${received.length} of ${count} messages`);
    received.forEach((message, index) => {
        assert.equal(message.body.seq, index + 1, `${label}: message ${index} has seq ${message.body.seq}`);
        assert.equal(message.headers.seq, String(index + 1));
    });
}

test('a direct room is created once, whichever of the two asks', async () => {
    const alice = host.token('alice', 'Alice');
    const bob = host.token('bob', 'Bob');
    const first = await host.http('POST', '/api/rooms', alice, { kind: 'direct', members: ['bob'] });
    assert.equal(first.status, 201, first.text);
    assert.deepEqual(first.json.members, ['alice', 'bob']);
    assert.equal(first.json.kind, 'direct');
    assert.equal(first.json.lastSeq, 0);
    const again = await host.http('POST', '/api/rooms', bob, { kind: 'direct', members: ['alice'] });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.id, first.json.id);
    const fetched = await host.http('GET', `/api/rooms/${first.json.id}`, bob);
    assert.equal(fetched.status, 200);
    assert.equal(fetched.json.id, first.json.id);
});

test('two users exchange 1,000 messages: every receipt, gapless order, stored once', async () => {
    const aliceToken = host.token('alice2', 'Alice');
    const bobToken = host.token('bob2', 'Bob');
    const room = await host.createRoom(aliceToken, { kind: 'direct', members: ['bob2'] });
    const alice = await host.stomp(aliceToken);
    const bob = await host.stomp(bobToken);
    const aliceSees = await collect(alice, room.id);
    const bobSees = await collect(bob, room.id);

    const started = Date.now();
    const receipts = [];
    for (let i = 0; i < TOTAL; i++) {
        const [client, who] = i % 2 === 0 ? [alice, 'alice2'] : [bob, 'bob2'];
        receipts.push(sendWithReceipt(client, room.id, `message ${i} from ${who}`));
    }
    const seqs = await Promise.all(receipts);
    await waitFor('every message delivered', () => aliceSees.length >= TOTAL && bobSees.length >= TOTAL);
    const elapsed = Date.now() - started;
    console.log(`# ${TOTAL} messages with receipts and delivery to 2 subscribers in ${elapsed} ms`);

    assert.deepEqual([...seqs].sort((a, b) => a - b), Array.from({ length: TOTAL }, (_, i) => i + 1),
        'every SEND got a RECEIPT naming its own seq');
    assertGapless(aliceSees, TOTAL, 'alice');
    assertGapless(bobSees, TOTAL, 'bob');
    assert.deepEqual(aliceSees.map((m) => m.body), bobSees.map((m) => m.body), 'both see the same messages');
    for (const message of aliceSees) {
        assert.equal(message.body.roomId, room.id);
        assert.equal(message.body.type, 'TALK');
        assert.match(message.body.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.equal(message.headers['content-type'], 'application/json');
        assert.equal(message.headers.destination, `/topic/rooms/${room.id}`);
        assert.ok(message.body.content.endsWith(message.body.senderId), 'sender comes from the token');
    }

    //  MongoDB holds each message exactly once (ack-after-persist)
    await waitFor('all messages in MongoDB', () => withMongo(host.database,
        async (db) => (await db.collection('messages').countDocuments({ roomId: room.id })) === TOTAL), 30000);
    await withMongo(host.database, async (db) => {
        const documents = await db.collection('messages').find({ roomId: room.id }).toArray();
        assert.equal(documents.length, TOTAL);
        assert.equal(new Set(documents.map((d) => d.seq)).size, TOTAL);
        assert.equal(new Set(documents.map((d) => d.clientMsgId)).size, TOTAL);
    });

    //  History from MongoDB through the HTTP API, newest first
    const page = await host.http('GET', `/api/rooms/${room.id}/messages?limit=50`, aliceToken);
    assert.equal(page.status, 200, page.text);
    assert.equal(page.json.length, 50);
    assert.equal(page.json[0].seq, TOTAL);
    assert.deepEqual(page.json[0], aliceSees[TOTAL - 1].body);
    const older = await host.http('GET', `/api/rooms/${room.id}/messages?before=11&limit=50`, bobToken);
    assert.deepEqual(older.json.map((m) => m.seq), [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);

    await alice.deactivate();
    await bob.deactivate();
});

test('the sender always comes from the token, never from the body', async () => {
    const aliceToken = host.token('alice3', 'Alice');
    const room = await host.createRoom(aliceToken, { kind: 'direct', members: ['bob3'] });
    const alice = await host.stomp(aliceToken);
    const bob = await host.stomp(host.token('bob3', 'Bob'));
    const bobSees = await collect(bob, room.id);
    await sendWithReceipt(alice, room.id, 'I am bob', randomUUID(), { senderId: 'bob3', senderName: 'Bob' });
    await waitFor('delivery', () => bobSees.length === 1);
    assert.equal(bobSees[0].body.senderId, 'alice3');
    assert.equal(bobSees[0].body.senderName, 'Alice');
    await waitFor('stored', () => withMongo(host.database,
        async (db) => (await db.collection('messages').countDocuments({ roomId: room.id })) === 1));
    await withMongo(host.database, async (db) => {
        const stored = await db.collection('messages').findOne({ roomId: room.id });
        assert.equal(stored.senderId, 'alice3');
        assert.equal(stored.senderName, 'Alice');
    });
    await alice.deactivate();
    await bob.deactivate();
});

test('a repeated clientMsgId is delivered and stored once, its receipt names the same seq', async () => {
    const aliceToken = host.token('alice4', 'Alice');
    const room = await host.createRoom(aliceToken, { kind: 'direct', members: ['bob4'] });
    const alice = await host.stomp(aliceToken);
    const bob = await host.stomp(host.token('bob4', 'Bob'));
    const bobSees = await collect(bob, room.id);
    const clientMsgId = randomUUID();
    const first = await sendWithReceipt(alice, room.id, 'once', clientMsgId);
    const again = await sendWithReceipt(alice, room.id, 'once', clientMsgId);
    const next = await sendWithReceipt(alice, room.id, 'next');
    assert.equal(first, 1);
    assert.equal(again, 1, 'the retry names the original seq');
    assert.equal(next, 2, 'no seq was spent on the retry');
    await waitFor('delivery', () => bobSees.length === 2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(bobSees.map((m) => m.body.content), ['once', 'next']);
    await waitFor('stored', () => withMongo(host.database,
        async (db) => (await db.collection('messages').countDocuments({ roomId: room.id })) === 2));
    await withMongo(host.database, async (db) => {
        assert.equal(await db.collection('messages').countDocuments({ roomId: room.id, clientMsgId }), 1);
    });
    await alice.deactivate();
    await bob.deactivate();
});
