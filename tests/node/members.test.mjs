//  Membership across two hosts: ROOM_ADDED and ROOM_REMOVED reach every
//  session of the user on every host; a removed member's subscriptions to
//  the room end at once (the session goes on) and history answers 403.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, sendWithReceipt, sleep, userEvents as events, waitFor } from './harness.mjs';

const hosts = [];
after(async () => { for (const host of hosts) await host.down(); });

const ofType = (list, type) => list.filter((event) => event.type === type);

test('ROOM_ADDED and ROOM_REMOVED on every session of the user on both hosts', async () => {
    const a = await new Host({ hostId: 'ma' }).up();
    hosts.push(a);
    const b = await a.sibling('mb');
    hosts.push(b);
    const tokens = Object.fromEntries(['alice', 'bob', 'carol', 'dave'].map((u) => [u, a.token(u, u.toUpperCase())]));
    const sessions = {
        alice: await a.stomp(tokens.alice),
        bobOnA: await a.stomp(tokens.bob), bobOnB: await b.stomp(tokens.bob),
        carol: await b.stomp(tokens.carol),
        daveOnA: await a.stomp(tokens.dave), daveOnB: await b.stomp(tokens.dave),
    };
    const seen = {};
    for (const [name, client] of Object.entries(sessions)) seen[name] = await events(client);

    //  A new room: every member, on every session, the creator too
    const room = await a.createRoom(tokens.alice, { kind: 'group', name: 'team', members: ['bob', 'carol'] });
    for (const name of ['alice', 'bobOnA', 'bobOnB', 'carol'])
        await waitFor(`ROOM_ADDED for ${name}`, () => ofType(seen[name], 'ROOM_ADDED').length === 1, 10000);
    assert.deepEqual(ofType(seen.bobOnB, 'ROOM_ADDED')[0].room, room);
    //  An added member: only that one
    const added = await b.http('POST', `/api/rooms/${room.id}/members`, tokens.alice, { userId: 'dave' });
    assert.equal(added.status, 200);
    for (const name of ['daveOnA', 'daveOnB'])
        await waitFor(`ROOM_ADDED for ${name}`, () => ofType(seen[name], 'ROOM_ADDED').length === 1, 10000);
    assert.deepEqual(ofType(seen.daveOnA, 'ROOM_ADDED')[0].room.members, ['alice', 'bob', 'carol', 'dave']);
    await sleep(300);
    assert.equal(ofType(seen.carol, 'ROOM_ADDED').length, 1, 'the others hear nothing of it');

    //  Removed: bob's subscriptions on both hosts end at once, the sessions go on
    const bobSees = [await collect(sessions.bobOnA, room.id), await collect(sessions.bobOnB, room.id)];
    await sendWithReceipt(sessions.alice, room.id, 'before');
    await waitFor('bob sees the first message', () => bobSees.every((list) => list.length === 1), 10000);
    const removed = await a.http('DELETE', `/api/rooms/${room.id}/members/bob`, tokens.alice);
    assert.equal(removed.status, 200);
    assert.deepEqual(removed.json.members, ['alice', 'carol', 'dave']);
    for (const name of ['bobOnA', 'bobOnB'])
        await waitFor(`ROOM_REMOVED for ${name}`, () => ofType(seen[name], 'ROOM_REMOVED').length === 1, 10000);
    assert.deepEqual(ofType(seen.bobOnA, 'ROOM_REMOVED')[0], { type: 'ROOM_REMOVED', roomId: room.id });
    await sendWithReceipt(sessions.alice, room.id, 'after');
    await sleep(500);
    assert.deepEqual(bobSees.map((list) => list.length), [1, 1], 'nothing after the removal');
    assert.ok(!sessions.bobOnA.closed && !sessions.bobOnB.closed);
    assert.equal((await b.http('GET', `/api/rooms/${room.id}/messages`, tokens.bob)).status, 403);
    assert.equal((await a.http('GET', `/api/rooms/${room.id}`, tokens.bob)).status, 403);
    assert.ok(await a.counter('parley_conn_subscriptions_ended_total') >= 0);

    //  A member removes itself
    assert.equal((await b.http('DELETE', `/api/rooms/${room.id}/members/carol`, tokens.carol)).status, 200);
    await waitFor('ROOM_REMOVED for carol', () => ofType(seen.carol, 'ROOM_REMOVED').length === 1, 10000);
    //  ...but not someone else, unless it created the room
    assert.equal((await b.http('DELETE', `/api/rooms/${room.id}/members/alice`, tokens.dave)).status, 403);
    await Promise.all(Object.values(sessions).map((client) => client.deactivate()));
});

test("a user's events queue is its own", async () => {
    const [a] = hosts;
    const mallory = await a.stomp(a.token('mallory', 'Mallory'));
    mallory.subscribe('/user/alice/queue/events', () => {});
    await waitFor('an ERROR', () => mallory.errors.length === 1, 10000);
    assert.match(mallory.errors[0].headers.message, /unknown destination/);
});
