//  Graceful stop: SIGTERM to an actor finishes or hands back its in-flight
//  work; clients are told to reconnect; nothing that got a RECEIPT is lost.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, connectStomp, delay, sendWithReceipt, sleep, waitFor, withMongo, randomUUID } from './harness.mjs';

let host;
after(async () => { await host?.down(); });

const actorOf = (client) => client.connectedFrame.headers.session.split('-').slice(0, -1).join('-');

//  Send count messages as fast as possible; resolve with the clientMsgIds
//  that got a RECEIPT (the others failed when the server went away).
async function sendStream (client, roomId, count, label) {
    const receipted = [];
    const attempts = [];
    for (let i = 0; i < count && !client.closed && client.errors.length === 0; i++) {
        const id = `${label}-${i}-${randomUUID()}`;
        attempts.push(sendWithReceipt(client, roomId, `${label} ${i}`, id).then(() => receipted.push(id), () => {}));
        if (i % 20 === 0) await sleep(2);
    }
    await Promise.race([Promise.allSettled(attempts), delay(2000)]);
    return receipted;
}

test('SIGTERM to a connection actor: its clients are told to reconnect, every receipted message arrives', async () => {
    host = await new Host({ conn: 2 }).up();
    const aliceToken = host.token('alice', 'Alice');
    const bobToken = host.token('bob', 'Bob');
    const room = await host.createRoom(aliceToken, { kind: 'direct', members: ['bob'] });
    //  alice on conn-0, bob on conn-1
    const extra = [];
    let alice;
    let bob;
    while (!alice || !bob) {
        const client = await host.stomp(alice ? bobToken : aliceToken);
        const actor = actorOf(client);
        if (!alice && actor.endsWith('conn-0')) alice = client;
        else if (alice && !bob && actor.endsWith('conn-1')) bob = client;
        else extra.push(client);
    }
    const bobSees = await collect(bob, room.id);
    const errors = new Promise((resolve) => { alice.onStompError = resolve; });
    const streaming = sendStream(alice, room.id, 2000, 'alice');
    await sleep(150);
    await host.kill('conn-0', 'SIGTERM');
    const error = await Promise.race([errors, delay(15000).then(() => { throw new Error('no ERROR frame'); })]);
    assert.match(error.headers.message, /shutting down.*reconnect/);
    const receipted = await streaming;
    assert.ok(receipted.length > 0, 'some were receipted before the stop');
    assert.equal(host.processes.get('conn-0').exitCode, 0, 'conn-0 exited cleanly');

    //  Reconnect (to conn-1, the one left) and go on
    const again = await connectStomp(host.url, aliceToken);
    receipted.push(...await sendStream(again, room.id, 10, 'again'));
    await waitFor('every receipted message at bob', () =>
        receipted.every((id) => bobSees.some((m) => m.body.clientMsgId === id)), 20000);
    assert.deepEqual(bobSees.map((m) => m.body.seq), Array.from({ length: bobSees.length }, (_, i) => i + 1));
    await waitFor('every receipted message stored', () => withMongo(host.database, async (db) =>
        (await db.collection('messages').countDocuments({ roomId: room.id, clientMsgId: { $in: receipted } })) === receipted.length), 20000);
    await Promise.all([again, bob, ...extra].map((client) => client.deactivate()));
    host.start('conn-0');
});

test('SIGTERM to the bridge mid-stream: a retry with the same clientMsgId is stored once', async () => {
    const aliceToken = host.token('carol', 'Carol');
    const room = await host.createRoom(aliceToken, { kind: 'direct', members: ['dave'] });
    const carol = await host.stomp(aliceToken);
    const ids = Array.from({ length: 500 }, () => randomUUID());
    const outcomes = ids.map((id, i) => sendWithReceipt(carol, room.id, `m ${i}`, id).then(() => 'ok', () => 'failed'));
    await sleep(20);
    await host.kill('bridge', 'SIGTERM');
    assert.equal(host.processes.get('bridge').exitCode, 0, 'the bridge exited cleanly');
    host.start('bridge');
    await Promise.race([Promise.all(outcomes), delay(12000)]);
    //  The client resends everything it has no receipt for, with the same ids
    const retry = await connectStomp(host.url, aliceToken);
    const settled = await Promise.all(outcomes.map((p) => Promise.race([p, delay(1).then(() => 'pending')])));
    const resend = ids.filter((_, i) => settled[i] !== 'ok');
    await waitFor('the host to be ready', async () => (await fetch(`${host.base}/readyz`)).status === 200);
    for (const id of resend) await sendWithReceipt(retry, room.id, `m retry`, id);
    await waitFor('all 500 stored once', () => withMongo(host.database, async (db) =>
        (await db.collection('messages').countDocuments({ roomId: room.id })) === 500), 30000);
    await withMongo(host.database, async (db) => {
        const docs = await db.collection('messages').find({ roomId: room.id }).toArray();
        assert.equal(new Set(docs.map((d) => d.clientMsgId)).size, 500);
        assert.deepEqual(docs.map((d) => d.seq).sort((a, b) => a - b), Array.from({ length: 500 }, (_, i) => i + 1));
    });
    await carol.deactivate().catch(() => {});
    await retry.deactivate();
});
