//  Room ids and what a non-member learns (issue 8). Direct room ids are
//  keyed (HMAC-SHA256 with room-id-secret), so nobody computes a pair's
//  room id; and a non-member gets the same bytes, status and body, for a
//  room of others and for a room that does not exist, on every path:
//  HTTP room, history and members, STOMP SUBSCRIBE (with and without
//  since-seq) and SEND.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { join } from 'node:path';
import { Host, rawSocket, sendWithReceipt, waitFor, withMongo } from './harness.mjs';

const roomIdSecret = 'attack-rooms room id key';
let host;
let room;
let aliceToken;

const pairText = (a, b) => [a, b].sort().join('\n');
const sha256Id = (a, b) => `d:${createHash('sha256').update(pairText(a, b)).digest('hex').slice(0, 32)}`;
const hmacId = (key, a, b) => `d:${createHmac('sha256', key).update(pairText(a, b)).digest('hex').slice(0, 32)}`;

before(async () => {
    host = await new Host({ extra: ['--room-id-secret', roomIdSecret] }).up();
    aliceToken = host.token('alice', 'Alice');
    room = await host.createRoom(aliceToken, { kind: 'direct', members: ['bob'] });
    const alice = await host.stomp(aliceToken);
    await sendWithReceipt(alice, room.id, 'between us');
    await alice.deactivate();
});
after(async () => {
    await host?.down();
});

//  Every answer that names the room, with the id written as ROOM: the
//  rest must be equal byte for byte
const anonymous = (text, id) => text.split(id).join('ROOM');

test('a direct room id is keyed: the plain SHA-256 of the pair is not it', async () => {
    assert.match(room.id, /^d:[0-9a-f]{32}$/);
    assert.notEqual(room.id, sha256Id('alice', 'bob'), 'the id of before keyed ids');
    assert.notEqual(room.id, hmacId('another key', 'alice', 'bob'));
    assert.equal(room.id, hmacId(roomIdSecret, 'alice', 'bob'), 'HMAC-SHA256 keyed with room-id-secret');
    //  Deterministic for the pair, whichever of the two asks
    const again = await host.http('POST', '/api/rooms', host.token('bob'), { kind: 'direct', members: ['alice'] });
    assert.equal(again.status, 200);
    assert.equal(again.json.id, room.id);
});

//  The HTTP requests of a non-member on a room
async function httpAnswers (token, id) {
    const path = `/api/rooms/${encodeURIComponent(id)}`;
    const answers = [
        await host.http('GET', path, token),
        await host.http('GET', `${path}/messages?limit=10`, token),
        await host.http('GET', `${path}/messages?before=5`, token),
        await host.http('POST', `${path}/members`, token, { userId: 'mallory' }),
        await host.http('DELETE', `${path}/members/mallory`, token),
        await host.http('DELETE', `${path}/members/bob`, token),
    ];
    return answers.map(({ status, text }) => `${status} ${anonymous(text, id)}`);
}

test('HTTP: a room of others and a made-up room get the same answers', async () => {
    const mallory = host.token('mallory');
    const existing = await httpAnswers(mallory, room.id);
    //  Guessed the old way, made up, and a group id that was never made
    for (const other of [sha256Id('alice', 'bob'), 'd:0123456789abcdef0123456789abcdef', 'g:nothing'])
        assert.deepEqual(await httpAnswers(mallory, other), existing, other);
    for (const answer of existing)
        assert.equal(answer, '403 {"error":"not a member of room ROOM"}');
});

//  A raw STOMP session of token: the bytes of what one frame brought
//  (the ERROR that ends the session)
async function stompAnswer (token, frame) {
    const socket = await rawSocket(host.url);
    socket.send(`CONNECT\naccept-version:1.2\nhost:parley\nAuthorization:Bearer ${token}\n\n\0`);
    await waitFor('CONNECTED', () => socket.received.some((text) => text.startsWith('CONNECTED')), 10000);
    const before = socket.received.length;
    socket.send(frame);
    await socket.closedPromise;
    return socket.received.slice(before).join('');
}

async function stompAnswers (token, id) {
    const subscribe = (extra) => `SUBSCRIBE\nid:1\ndestination:/topic/rooms/${id}\nreceipt:r1\n${extra}\n\0`;
    const body = JSON.stringify({ type: 'TALK', content: 'intrusion', clientMsgId: 'c1' });
    const answers = [
        await stompAnswer(token, subscribe('')),
        await stompAnswer(token, subscribe('since-seq:0\n')),
        await stompAnswer(token, `SEND\ndestination:/app/rooms/${id}\nreceipt:r2\ncontent-type:application/json\n\n${body}\0`),
    ];
    //  Header values are escaped as STOMP 1.2 says: ':' is "\\c"
    return answers.map((text) => anonymous(anonymous(text, id), id.replaceAll(':', '\\c')));
}

test('STOMP: SUBSCRIBE, resume and SEND get the same ERROR for a room of others and a made-up one', async () => {
    const mallory = host.token('mallory');
    const existing = await stompAnswers(mallory, room.id);
    for (const answer of existing) {
        assert.match(answer, /^ERROR\n/);
        assert.match(answer, /message:not a member of room ROOM\n/);
    }
    assert.deepEqual(await stompAnswers(mallory, 'd:0123456789abcdef0123456789abcdef'), existing);
    assert.deepEqual(await stompAnswers(mallory, sha256Id('alice', 'bob')), existing);
    //  Nothing mallory sent reached the room
    const page = await host.http('GET', `/api/rooms/${room.id}/messages`, aliceToken);
    assert.equal(page.status, 200);
    assert.deepEqual(page.json.map((message) => message.content), ['between us']);
});

test('every refusal of a non-member is counted in /metrics', async () => {
    //  The tests above refused 24 HTTP requests and 9 STOMP frames at least
    const figure = (text, name) => Number((text.match(new RegExp(`^${name}\\{[^}]*\\} (\\d+)$`, 'm')) ?? [])[1] ?? -1);
    await waitFor('the refusals in /metrics', async () => {
        const { text } = await host.http('GET', '/metrics');
        return figure(text, 'parley_store_not_member_refused_total') >= 24
            && figure(text, 'parley_router_not_member_refused_total') >= 9;
    });
});

test('a direct room stored under its old SHA-256 id stays the pair\'s room', async () => {
    const oldId = sha256Id('carol', 'dave');
    await withMongo(host.database, async (db) => {
        await db.collection('rooms').insertOne({ _id: oldId, kind: 'direct', name: null, members: ['carol', 'dave'],
            createdBy: 'carol', createdAt: new Date() });
        await db.collection('members').insertMany(['carol', 'dave'].map((user) =>
            ({ _id: `${oldId}#${user}`, roomId: oldId, userId: user, readSeq: 0 })));
    });
    for (const [user, other] of [['carol', 'dave'], ['dave', 'carol']]) {
        const answer = await host.http('POST', '/api/rooms', host.token(user), { kind: 'direct', members: [other] });
        assert.equal(answer.status, 200);
        assert.equal(answer.json.id, oldId, 'found, not made again under the keyed id');
    }
    assert.equal((await host.http('GET', `/api/rooms/${oldId}`, host.token('dave'))).status, 200);
    const carol = await host.stomp(host.token('carol'));
    assert.equal(await sendWithReceipt(carol, oldId, 'still ours'), 1);
    await carol.deactivate();
    //  A non-member learns nothing more about an old room than about any other
    assert.deepEqual(await httpAnswers(host.token('mallory'), oldId), await httpAnswers(host.token('mallory'), 'g:nothing'));
    await withMongo(host.database, async (db) =>
        assert.equal(await db.collection('rooms').countDocuments({ members: ['carol', 'dave'] }), 1));
});

test('a persistence actor with no room-id-secret and no jwt-secret does not start', async () => {
    const child = spawn(join(process.env.PARLEY_BUILD_DIR, 'parley-persistence'),
        ['--runtime-dir', host.runtime, '--instance', '7', '--mongo-url', 'mongodb://127.0.0.1:1'],
        { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PARLEY_JWT_SECRET: '', PARLEY_ROOM_ID_SECRET: '' } });
    let log = '';
    child.stderr.on('data', (data) => { log += data; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
    const code = await new Promise((resolve) => child.once('exit', (exit, signal) => resolve(exit ?? signal)));
    clearTimeout(timer);
    assert.notEqual(code, 0);
    assert.notEqual(code, 'SIGKILL', 'it stopped by itself');
    assert.match(log, /room-id-secret/);
});
