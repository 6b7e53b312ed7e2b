//  Exact resume: SUBSCRIBE with since-seq N delivers every message with
//  seq > N of the room exactly once, in order, then live messages: from
//  MongoDB, from the stream for what is not stored yet, and while new
//  messages keep arriving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, connectStomp, sendWithReceipt, sleep, waitFor } from './harness.mjs';

let host;
before(async () => { host = await new Host({ conn: 2, extra: ['--history-limit', '25'] }).up(); });
after(async () => { await host?.down(); });

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function room (a, b) {
    const token = host.token(a);
    const created = await host.createRoom(token, { kind: 'direct', members: [b] });
    return { id: created.id, sender: await host.stomp(token), reader: host.token(b) };
}

test('since-seq: the rest of the room from MongoDB and the stream, then live', async () => {
    const { id, sender, reader } = await room('a1', 'b1');
    for (let i = 1; i <= 60; i++) await sendWithReceipt(sender, id, `m${i}`);
    const bob = await host.stomp(reader);
    const seen = await collect(bob, id, { 'since-seq': '10' });
    await waitFor('the gap', () => seen.length >= 50);
    for (let i = 61; i <= 70; i++) await sendWithReceipt(sender, id, `m${i}`);
    await waitFor('live after the gap', () => seen.length >= 60);
    await sleep(200);
    assert.deepEqual(seen.map((m) => m.body.seq), range(11, 70));
    assert.deepEqual(seen.map((m) => m.body.content), range(11, 70).map((i) => `m${i}`));
    assert.equal(seen[0].headers.seq, '11');
    await sender.deactivate();
    await bob.deactivate();
});

test('since-seq while messages keep arriving: no gap, no duplicate', async () => {
    const { id, sender, reader } = await room('a2', 'b2');
    let sending = true;
    let sent = 0;
    const stream = (async () => {
        while (sending) { await sendWithReceipt(sender, id, `m${++sent}`); }
    })();
    await waitFor('some history', () => sent >= 80);
    const bob = await host.stomp(reader);
    const seen = await collect(bob, id, { 'since-seq': '0' });
    await waitFor('more after the subscription', () => sent >= 200);
    sending = false;
    await stream;
    await waitFor('everything', () => seen.length >= sent, 20000);
    await sleep(200);
    assert.deepEqual(seen.map((m) => m.body.seq), range(1, sent));
    await sender.deactivate();
    await bob.deactivate();
});

test('since-seq covers messages that are in the stream but not yet in MongoDB', async () => {
    const { id, sender, reader } = await room('a3', 'b3');
    for (let i = 1; i <= 5; i++) await sendWithReceipt(sender, id, `stored ${i}`);
    await sleep(500);
    await host.kill('store-0');
    for (let i = 6; i <= 40; i++) await sendWithReceipt(sender, id, `only in Redis ${i}`);
    //  The member list is cached by the router, so this works with no store
    const bob = await host.stomp(reader);
    const seen = await collect(bob, id, { 'since-seq': '3' });
    await waitFor('the unstored tail', () => seen.length >= 37, 20000).catch(() => {});
    host.start('store-0');
    await waitFor('all', () => seen.length >= 37, 20000);
    assert.deepEqual(seen.map((m) => m.body.seq), range(4, 40));
    await waitFor('the store back', async () => (await fetch(`${host.base}/readyz`)).status === 200);
    await sender.deactivate();
    await bob.deactivate();
});

test('a client whose connection actor died resumes and loses nothing', async () => {
    const { id, sender: first, reader } = await room('a4', 'b4');
    //  bob on conn-0, the sender on conn-1 (it keeps sending meanwhile)
    const on = (client, actor) => client.connectedFrame.headers.session.includes(`${actor}-`);
    const others = [first];
    let bob;
    let sender;
    while (!bob || !sender) {
        const client = await host.stomp(bob ? host.token('a4') : reader);
        if (!bob && on(client, 'conn-0')) bob = client;
        else if (bob && on(client, 'conn-1')) sender = client;
        else others.push(client);
    }
    const seen = await collect(bob, id);
    let sending = true;
    let sent = 0;
    const stream = (async () => {
        while (sending) { await sendWithReceipt(sender, id, `m${++sent}`).catch(() => {}); }
    })();
    await waitFor('some delivered', () => seen.length >= 30);
    await host.kill('conn-0');
    const last = seen.at(-1).body.seq;
    await sleep(300);
    //  Reconnect (the port's other actor takes it) and resume after the last seen
    const again = await connectStomp(host.url, reader);
    const rest = await collect(again, id, { 'since-seq': String(last) });
    await waitFor('a few more', () => sent >= last + 100);
    sending = false;
    await stream;
    await waitFor('everything', () => last + rest.length >= sent, 20000);
    await sleep(200);
    const all = [...seen.map((m) => m.body.seq), ...rest.map((m) => m.body.seq)];
    assert.deepEqual(all, range(1, sent));
    host.start('conn-0');
    await Promise.all([sender, again, ...others].map((c) => c.deactivate().catch(() => {})));
});

test('since-seq must be a number', async () => {
    const { id, sender, reader } = await room('a5', 'b5');
    const bob = await host.stomp(reader);
    const error = new Promise((resolve) => { bob.onStompError = resolve; });
    bob.subscribe(`/topic/rooms/${id}`, () => {}, { 'since-seq': 'yesterday' });
    assert.match((await error).headers.message, /since-seq/);
    await sender.deactivate();
});
