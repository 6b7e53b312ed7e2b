//  GET /api/rooms: unread counts exact for every member after a mixed run
//  (own messages never count), lastMessage, newest activity first, pages.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, sendWithReceipt, sleep, waitFor, randomUUID } from './harness.mjs';

let host;
after(async () => { await host?.down(); });

function read (client, roomId, seq) {
    const receipt = `r-${randomUUID()}`;
    const done = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
    client.publish({ destination: `/app/rooms/${roomId}`, headers: { receipt }, body: JSON.stringify({ type: 'READ', seq }) });
    return done;
}

test('unread, lastMessage, order and pages of the room list', async () => {
    host = await new Host().up();
    const tokens = Object.fromEntries(['ann', 'ben', 'cat'].map((u) => [u, host.token(u, u.toUpperCase())]));
    const ann = await host.stomp(tokens.ann);
    const ben = await host.stomp(tokens.ben);
    const cat = await host.stomp(tokens.cat);
    const group = await host.createRoom(tokens.ann, { kind: 'group', name: 'three', members: ['ben', 'cat'] });
    await sleep(5);
    const quiet = await host.createRoom(tokens.ann, { kind: 'group', name: 'quiet', members: ['ben'] });
    await sleep(5);
    const direct = await host.createRoom(tokens.ann, { kind: 'direct', members: ['ben'] });

    //  A mixed run in the group: ann 3, ben 2, cat 1, interleaved
    for (const [client, text] of [[ann, 'a1'], [ben, 'b1'], [cat, 'c1'], [ann, 'a2'], [ben, 'b2'], [ann, 'a3']])
        await sendWithReceipt(client, group.id, text);
    await sendWithReceipt(ben, direct.id, 'hi ann');
    await read(ben, group.id, 2);           //  ben read a1, b1
    const list = async (token, query = '') => {
        const answer = await host.http('GET', `/api/rooms${query}`, token);
        assert.equal(answer.status, 200, answer.text);
        return answer.json;
    };
    const stored = async () => (await list(tokens.ann)).find((r) => r.id === group.id)?.lastSeq === 6
        && (await list(tokens.ben)).find((r) => r.id === group.id).unread === 3;
    await waitFor('messages and the cursor stored', stored, 20000);

    const unread = async (token) => Object.fromEntries((await list(token)).map((r) => [r.id, r.unread]));
    //  ann: ben's 2 + cat's 1 in the group, ben's 1 in the direct room
    assert.deepEqual(await unread(tokens.ann), { [group.id]: 3, [quiet.id]: 0, [direct.id]: 1 });
    //  ben: after seq 2, a2 + a3 + c1 (its own b2 does not count)
    assert.deepEqual(await unread(tokens.ben), { [group.id]: 3, [quiet.id]: 0, [direct.id]: 0 });
    //  cat: everything but its own c1
    assert.deepEqual(await unread(tokens.cat), { [group.id]: 5 });

    //  Newest activity first: the direct room, the group, then quiet (by creation)
    const annRooms = await list(tokens.ann);
    assert.deepEqual(annRooms.map((r) => r.id), [direct.id, group.id, quiet.id]);
    assert.equal(annRooms[0].lastMessage.content, 'hi ann');
    assert.equal(annRooms[0].lastMessage.senderId, 'ben');
    assert.equal(annRooms[1].lastMessage.seq, 6);
    assert.equal(annRooms[2].lastMessage, null);

    //  Pages: limit, then after the last one
    const first = await list(tokens.ann, '?limit=2');
    assert.deepEqual(first.map((r) => r.id), [direct.id, group.id]);
    const second = await list(tokens.ann, `?limit=2&after=${encodeURIComponent(group.id)}`);
    assert.deepEqual(second.map((r) => r.id), [quiet.id]);
    assert.equal((await host.http('GET', `/api/rooms?after=${encodeURIComponent(quiet.id)}`, tokens.cat)).status, 400);

    //  Reading everything clears the count
    await read(cat, group.id, 6);
    await waitFor('cat read all', async () => (await unread(tokens.cat))[group.id] === 0, 20000);
    await Promise.all([ann, ben, cat].map((client) => client.deactivate()));
});
