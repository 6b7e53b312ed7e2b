//  Two connection actors of one host share one port (SO_REUSEPORT): clients
//  of a direct room that sit on different connection actors see each other.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, sendWithReceipt, waitFor } from './harness.mjs';

let host;
after(async () => { await host?.down(); });

//  The CONNECTED frame's session header names the connection actor.
const actorOf = (client) => client.connectedFrame.headers.session.split('-').slice(0, -1).join('-');

test('clients on different connection actors of one host see each other', async () => {
    host = await new Host({ conn: 2 }).up();
    const aliceToken = host.token('alice', 'Alice');
    const bobToken = host.token('bob', 'Bob');
    const room = await host.createRoom(aliceToken, { kind: 'direct', members: ['bob'] });

    //  The kernel spreads connections over the two listeners: open some
    //  until alice and bob sit on different actors
    const clients = [];
    let alice;
    let bob;
    for (let tries = 0; tries < 64 && !(alice && bob); tries++) {
        const aliceTry = await host.stomp(aliceToken);
        const bobTry = await host.stomp(bobToken);
        clients.push(aliceTry, bobTry);
        if (actorOf(aliceTry) !== actorOf(bobTry)) {
            alice = aliceTry;
            bob = bobTry;
        }
    }
    assert.ok(alice && bob, 'both connection actors took connections');
    const aliceSees = await collect(alice, room.id);
    const bobSees = await collect(bob, room.id);
    const receipts = [];
    for (let i = 0; i < 100; i++)
        receipts.push(sendWithReceipt(i % 2 ? bob : alice, room.id, `message ${i}`));
    await Promise.all(receipts);
    await waitFor('delivery on both actors', () => aliceSees.length === 100 && bobSees.length === 100);
    assert.deepEqual(aliceSees.map((m) => m.body.seq), Array.from({ length: 100 }, (_, i) => i + 1));
    assert.deepEqual(bobSees.map((m) => m.body), aliceSees.map((m) => m.body));
    await Promise.all(clients.map((client) => client.deactivate()));
});
