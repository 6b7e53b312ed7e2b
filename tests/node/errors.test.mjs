//  Bad input gets a clear ERROR and changes nothing else: the other clients
//  of the same actors keep working.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, connectStomp, rawSocket, sendWithReceipt, sleep, waitFor, withMongo, randomUUID } from './harness.mjs';

let host;
let room;
let alice;
let bob;
let bobSees;
let sent = 0;

before(async () => {
    host = await new Host({ extra: ['--max-frame-bytes', '8192'] }).up();
    const aliceToken = host.token('alice', 'Alice');
    room = await host.createRoom(aliceToken, { kind: 'direct', members: ['bob'] });
    alice = await host.stomp(aliceToken);
    bob = await host.stomp(host.token('bob', 'Bob'));
    bobSees = await collect(bob, room.id);
});
after(async () => {
    await alice?.deactivate();
    await bob?.deactivate();
    await host?.down();
});

//  After each bad client, the good ones still talk.
async function othersStillWork () {
    sent++;
    const seq = await sendWithReceipt(alice, room.id, `still working ${sent}`);
    assert.equal(seq, sent);
    await waitFor('delivery to bob', () => bobSees.length === sent);
    assert.equal(bobSees[sent - 1].body.content, `still working ${sent}`);
}

async function expectRefused (token, headers = {}) {
    await assert.rejects(connectStomp(host.url, token, headers), (error) => {
        assert.match(error.message, /authentication failed|token/i);
        return true;
    });
}

test('a missing token gets an ERROR', async () => {
    await expectRefused(undefined);
    await othersStillWork();
});

test('a bad, expired or foreign token gets an ERROR', async () => {
    await expectRefused('not-a-jwt');
    const now = Math.floor(Date.now() / 1000);
    await expectRefused(host.forgeToken({ sub: 'alice', name: 'Alice', exp: now - 120 }));
    await expectRefused(host.forgeToken({ sub: 'alice', name: 'Alice' }));
    await expectRefused(host.forgeToken({ sub: 'a/b', exp: now + 60 }));
    await expectRefused(host.forgeToken({ sub: 'alice', exp: now + 60 }, 'another secret'));
    const foreign = new Host();
    await expectRefused(foreign.token('alice', 'Alice'));
    //  passcode carries the token as well
    const viaPasscode = await connectStomp(host.url, undefined, { passcode: host.token('carol') });
    await viaPasscode.deactivate();
    await othersStillWork();
});

test('a non-member may neither subscribe nor send', async () => {
    const mallory = await host.stomp(host.token('mallory'));
    const error = new Promise((resolve) => { mallory.onStompError = resolve; });
    mallory.subscribe(`/topic/rooms/${room.id}`, () => assert.fail('mallory got a message'));
    const frame = await error;
    assert.match(frame.headers.message, /not a member/);

    const mallory2 = await host.stomp(host.token('mallory'));
    const error2 = new Promise((resolve) => { mallory2.onStompError = resolve; });
    mallory2.publish({ destination: `/app/rooms/${room.id}`, headers: { receipt: 'x' },
        body: JSON.stringify({ type: 'TALK', content: 'intrusion', clientMsgId: randomUUID() }) });
    const frame2 = await error2;
    assert.match(frame2.headers.message, /not a member/);
    await othersStillWork();
    assert.ok(!bobSees.some((m) => m.body.content === 'intrusion'));
});

test('a frame over the size limit gets an ERROR', async () => {
    const big = await host.stomp(host.token('alice'));
    const error = new Promise((resolve) => { big.onStompError = resolve; });
    big.publish({ destination: `/app/rooms/${room.id}`,
        body: JSON.stringify({ type: 'TALK', content: 'x'.repeat(20000), clientMsgId: randomUUID() }) });
    const frame = await error;
    assert.match(frame.headers.message, /exceeds|too large|limit/i);
    await othersStillWork();
});

test('a SEND body that is not a valid message gets an ERROR', async () => {
    for (const body of ['not json', '{"type":"TALK"}', '{"type":"TALK","content":""}', '{"type":"SHOUT","content":"x"}']) {
        const client = await host.stomp(host.token('alice'));
        const error = new Promise((resolve) => { client.onStompError = resolve; });
        client.publish({ destination: `/app/rooms/${room.id}`, body });
        const frame = await error;
        assert.ok(frame.headers.message.length > 0, `a clear message for ${body}`);
    }
    await othersStillWork();
});

test('garbage bytes get an ERROR and the connection closes', async () => {
    const socket = await rawSocket(host.url);
    socket.send(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0a, 0x0a, 0x00]));
    socket.send('HELLO\nfoo:bar\n\n\0');
    await socket.closedPromise;
    assert.ok(socket.received.some((frame) => frame.startsWith('ERROR')), 'an ERROR frame came first');
    const unauthenticated = await rawSocket(host.url);
    unauthenticated.send('SEND\ndestination:/app/rooms/x\n\nhi\0');
    await unauthenticated.closedPromise;
    assert.ok(unauthenticated.received.some((frame) => frame.startsWith('ERROR')));
    await othersStillWork();
});

test('HTTP errors are JSON with the right status', async () => {
    const token = host.token('alice');
    assert.equal((await host.http('GET', '/api/rooms/whatever')).status, 401);
    assert.equal((await host.http('POST', '/api/rooms', 'bad-token', { kind: 'direct', members: ['bob'] })).status, 401);
    const bad = await host.http('POST', '/api/rooms', token, 'not json');
    assert.equal(bad.status, 400);
    assert.ok(bad.json.error);
    //  No such room answers as a room of others would (issue 8)
    assert.equal((await host.http('GET', '/api/rooms/no-such-room', token)).status, 403);
    assert.equal((await host.http('GET', `/api/rooms/${room.id}`, host.token('mallory'))).status, 403);
    const huge = await host.http('POST', '/api/rooms', token, { kind: 'group', name: 'x'.repeat(100000), members: [] });
    assert.equal(huge.status, 413);
    assert.equal((await host.http('GET', '/nowhere', token)).status, 404);
    await othersStillWork();
});

test('nothing a bad client did reached MongoDB', async () => {
    await sleep(500);
    await waitFor('stored', () => withMongo(host.database,
        async (db) => (await db.collection('messages').countDocuments({ roomId: room.id })) === sent));
    await withMongo(host.database, async (db) => {
        assert.equal(await db.collection('messages').countDocuments({}), sent);
    });
});
