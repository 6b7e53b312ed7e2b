//  Hostile STOMP clients (issue 8): what a client wrote is stored as it
//  wrote it or refused with an ERROR; an expired token ends its session;
//  limits on rate, connections and requests in flight hold, each refusal
//  named in the ERROR and counted in /metrics. The others keep working.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, connectStomp, rawSocket, sendWithReceipt, sleep, waitFor, withMongo, randomUUID } from './harness.mjs';

//  Tight limits, so that a few frames show each one
const LIMITS = ['--send-rate', '2', '--send-burst', '10', '--max-in-flight', '2',
    '--max-connections-per-user', '3', '--max-connections', '12'];
let host;
let room;
let group;
let alice;
let bob;
let bobSees;
let sent = 0;

before(async () => {
    host = await new Host({ extra: ['--jwt-leeway-s', '0', ...LIMITS] }).up();
    const aliceToken = host.token('alice', 'Alice');
    room = await host.createRoom(aliceToken, { kind: 'direct', members: ['bob'] });
    group = await host.createRoom(aliceToken, { kind: 'group', name: 'attackers', members: ['carol', 'dave'] });
    alice = await host.stomp(aliceToken);
    bob = await host.stomp(host.token('bob', 'Bob'));
    bobSees = await collect(bob, room.id);
});
after(async () => {
    await alice?.deactivate();
    await bob?.deactivate();
    await host?.down();
});

//  After each attack the good clients still talk, and the room holds
//  exactly what was receipted.
async function othersStillWork () {
    sent++;
    const seq = await sendWithReceipt(alice, room.id, `still working ${sent}`);
    assert.equal(seq, sent, 'nothing else was appended');
    await waitFor('delivery to bob', () => bobSees.length === sent);
    assert.equal(bobSees[sent - 1].body.content, `still working ${sent}`);
}

//  A raw SEND body (not JSON.stringify'd by the client): the ERROR it gets
async function sendRaw (token, body) {
    const client = await host.stomp(token);
    const error = new Promise((resolve) => { client.onStompError = resolve; });
    client.publish({ destination: `/app/rooms/${room.id}`, headers: { receipt: 'nul' }, body });
    const frame = await error;
    await client.deactivate();
    return frame;
}

test('content with NUL is refused with an ERROR, never cut and stored', async () => {
    const before = await host.counter('parley_conn_refused_nul_total');
    const token = host.token('alice', 'Alice');
    for (const body of ['{"type":"TALK","content":"visible\\u0000hidden"}', '{"type":"TALK","content":"\\u0000"}',
        JSON.stringify({ type: 'TALK', content: 'a\0b', clientMsgId: randomUUID() })]) {
        const frame = await sendRaw(token, body);
        assert.match(frame.headers.message, /NUL/, `a clear message for ${body}`);
        assert.equal(frame.headers['receipt-id'], 'nul');
    }
    await othersStillWork();
    const stored = await withMongo(host.database, (db) => db.collection('messages').find({}).toArray());
    assert.ok(!stored.some((m) => /visible|^$|^a$/.test(m.content)), 'no cut content stored');
    await waitFor('the refusals counted', async () => await host.counter('parley_conn_refused_nul_total') === before + 3, 5000);
});

test('a session ends with an ERROR when its token expires; a new token resumes', async () => {
    const before = await host.counter('parley_conn_tokens_expired_total');
    //  Nothing here has to happen before the expiry, so a loaded machine
    //  cannot make the test race the token
    const client = await host.stomp(host.token('alice', 'Alice', 3));
    const ended = new Promise((resolve) => { client.onStompError = resolve; });
    await collect(client, room.id);
    const started = Date.now();
    const frame = await Promise.race([ended, sleep(10000).then(() => assert.fail('no ERROR after exp'))]);
    console.log(`# token of 3 s: ERROR ${Date.now() - started} ms after the subscription`);
    assert.match(frame.headers.message, /token expired/);
    assert.match(frame.headers.message, /new token/);
    assert.match(frame.headers.message, /since-seq/);
    await waitFor('the socket closed', () => client.closed, 5000);
    //  What it missed comes back with a new token and since-seq
    const cursor = sent;
    await othersStillWork();
    const again = await host.stomp(host.token('alice', 'Alice'));
    const resumed = await collect(again, room.id, { 'since-seq': String(cursor) });
    await waitFor('the missed message', () => resumed.length === 1);
    assert.equal(resumed[0].body.seq, sent);
    await again.deactivate();
    await waitFor('the expiry counted', async () => await host.counter('parley_conn_tokens_expired_total') >= before + 1, 5000);
});

//  Wait for a client's ERROR (it ends the session)
async function errorOf (client, ms = 5000) {
    await waitFor('an ERROR', () => client.errors.length > 0, ms);
    return client.errors[0].headers.message;
}

//  Contents of a user's messages stored in the group room
async function storedOf (user) {
    return withMongo(host.database, (db) => db.collection('messages')
        .find({ roomId: group.id, senderId: user }).toArray()).then((docs) => docs.map((d) => d.content));
}

test('SENDs over send-rate get an ERROR naming it; every receipted one is stored', async () => {
    const before = await host.counter('parley_conn_refused_send_rate_total');
    const carol = await host.stomp(host.token('carol'));
    const receipted = [];
    const started = Date.now();
    for (let i = 0; i < 20 && carol.errors.length === 0 && !carol.closed; i++) {
        const content = `carol ${i}`;
        const seq = await Promise.race([sendWithReceipt(carol, group.id, content), errorOf(carol).then(() => 0)]);
        if (seq) receipted.push(content);
    }
    const elapsed = Date.now() - started;
    console.log(`# send-rate 2/s burst 10: ${receipted.length} SENDs receipted in ${elapsed} ms, then ERROR`);
    assert.match(await errorOf(carol), /rate limit.*send-rate/);
    assert.ok(receipted.length >= 10 && receipted.length <= 10 + Math.ceil(elapsed * 2 / 1000),
        `${receipted.length} receipted`);
    await waitFor('every receipted SEND stored', async () => {
        const stored = await storedOf('carol');
        return receipted.every((content) => stored.includes(content));
    }, 10000);
    await waitFor('the refusal counted', async () => await host.counter('parley_conn_refused_send_rate_total') > before, 5000);
    await othersStillWork();
});

test('more requests in flight than max-in-flight get an ERROR naming it', async () => {
    const before = await host.counter('parley_conn_refused_in_flight_total');
    const dave = await host.stomp(host.token('dave'));
    const receipted = [];
    for (let i = 0; i < 8; i++)
        sendWithReceipt(dave, group.id, `dave ${i}`).then(() => receipted.push(`dave ${i}`), () => {});
    assert.match(await errorOf(dave), /max-in-flight/);
    await waitFor('the socket closed', () => dave.closed, 5000);
    assert.ok(receipted.length <= 2, `${receipted.length} receipted`);
    await waitFor('every receipted SEND stored', async () => {
        const stored = await storedOf('dave');
        return receipted.every((content) => stored.includes(content));
    }, 10000);
    await waitFor('the refusal counted', async () => await host.counter('parley_conn_refused_in_flight_total') > before, 5000);
    await othersStillWork();
});

test('connections over max-connections-per-user and max-connections get an ERROR naming the limit', async () => {
    const token = host.token('eve');
    const eves = [];
    for (let i = 0; i < 3; i++) eves.push(await host.stomp(token));
    await assert.rejects(host.stomp(token), /max-connections-per-user/);
    await eves.pop().deactivate();
    eves.push(await host.stomp(token));
    for (const eve of eves) await eve.deactivate();

    //  Raw sockets, never CONNECTed, fill the actor: the rest are refused
    const sockets = await Promise.all(Array.from({ length: 14 }, () => rawSocket(host.url)));
    await waitFor('the refused ones told', () => sockets.filter((s) => s.received.length > 0).length >= 4, 5000);
    const refused = sockets.filter((s) => s.received.some((f) => /^ERROR/.test(f) && /max-connections/.test(f)));
    assert.ok(refused.length >= 4, `${refused.length} of 14 refused`);
    for (const socket of sockets) socket.close();
    await Promise.all(sockets.map((s) => s.closedPromise));
    await waitFor('the counts', async () => await host.counter('parley_conn_refused_connections_total') >= 4
        && await host.counter('parley_conn_refused_connections_per_user_total') >= 1, 5000);
    await othersStillWork();
});
