//  UNREAD events across two hosts: a count for every room when a user's
//  events queue opens, then the new count of a room when it changes (a
//  message, a READ), coalesced to one a room per unread-interval-ms,
//  exact in the end, on every session of the user on every host.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, sendWithReceipt, sleep, userEvents as events, waitFor, randomUUID } from './harness.mjs';

const hosts = [];
after(async () => { for (const host of hosts) await host.down(); });

function read (client, roomId, seq) {
    const receipt = `r-${randomUUID()}`;
    const done = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
    client.publish({ destination: `/app/rooms/${roomId}`, headers: { receipt }, body: JSON.stringify({ type: 'READ', seq }) });
    return done;
}

const counts = (list, roomId) => list.filter((e) => e.type === 'UNREAD' && e.roomId === roomId).map((e) => e.unread);
const last = (list, roomId) => counts(list, roomId).at(-1);

test('UNREAD counts on every session of a user on both hosts', async () => {
    const a = await new Host({ hostId: 'ua' }).up();
    hosts.push(a);
    const b = await a.sibling('ub');
    hosts.push(b);
    const aliceToken = a.token('alice', 'Alice');
    const bobToken = a.token('bob', 'Bob');
    const group = await a.createRoom(aliceToken, { kind: 'group', name: 'badges', members: ['bob', 'carol'] });
    const direct = await a.createRoom(aliceToken, { kind: 'direct', members: ['bob'] });
    const alice = await a.stomp(aliceToken);
    for (let i = 0; i < 2; i++) await sendWithReceipt(alice, direct.id, `before ${i}`);
    await waitFor('stored', async () => (await a.http('GET', '/api/rooms', bobToken)).json
        .find((r) => r.id === direct.id).lastSeq === 2, 10000);

    //  Opening the queue: a count for every room
    const bobOnA = await a.stomp(bobToken);
    const bobOnB = await b.stomp(bobToken);
    const seen = [await events(bobOnA), await events(bobOnB)];
    for (const list of seen)
        await waitFor('the first counts', () => last(list, direct.id) === 2 && last(list, group.id) === 0, 10000);

    //  A burst: coalesced, exact in the end, on both hosts
    const before = seen.map((list) => counts(list, group.id).length);
    for (let i = 0; i < 20; i++) await sendWithReceipt(alice, group.id, `burst ${i}`);
    for (const list of seen)
        await waitFor('20 unread', () => last(list, group.id) === 20, 15000);
    seen.forEach((list, index) => {
        const told = counts(list, group.id).length - before[index];
        assert.ok(told >= 1 && told <= 6, `${told} UNREAD events for 20 messages`);
    });

    //  A READ lowers it; bob's own message does not raise it
    await read(bobOnB, group.id, 15);
    for (const list of seen)
        await waitFor('5 unread after the READ', () => last(list, group.id) === 5, 15000);
    await sendWithReceipt(bobOnA, group.id, 'from bob');
    await sleep(2500);
    for (const list of seen)
        assert.equal(last(list, group.id), 5, "one's own message is not unread");

    //  A new room: ROOM_ADDED, then its count
    const later = await b.createRoom(aliceToken, { kind: 'group', name: 'later', members: ['bob'] });
    await sendWithReceipt(alice, later.id, 'hello');
    for (const list of seen) {
        await waitFor('ROOM_ADDED', () => list.some((e) => e.type === 'ROOM_ADDED' && e.room.id === later.id), 10000);
        await waitFor('its count', () => last(list, later.id) === 1, 15000);
    }
    await Promise.all([alice, bobOnA, bobOnB].map((client) => client.deactivate()));
});
