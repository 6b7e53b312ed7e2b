//  A bad day without an attacker (issue 8, defect 3): right after a burst
//  of messages, while the persistence actor works through its backlog,
//  people create rooms, 32 at a time. None of them may get a 503: queries
//  take turns with the backlog, and the router never calls the busy store
//  silent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, sendWithReceipt } from './harness.mjs';

const MESSAGES = 10000;
const ROOMS = 192;
const AT_ONCE = 32;

let host;
before(async () => {
    host = await new Host({ extra: ['--peer-heartbeat-ms', '200', '--peer-timeout-ms', '1500'] }).up();
});
after(async () => { await host?.down(); });

test('room creations right after a burst all succeed while the store catches up', async () => {
    //  The burst: ten senders, many receipts in flight each
    const senders = [];
    for (let i = 0; i < 10; i++) {
        const token = host.token(`burst${i}`);
        const room = await host.createRoom(token, { kind: 'direct', members: [`peer${i}`] });
        const client = await host.stomp(token);
        await collect(client, room.id);
        senders.push({ client, room });
    }
    await Promise.all(senders.map(async ({ client, room }) => {
        const perSender = MESSAGES / senders.length;
        for (let sent = 0; sent < perSender; sent += 100)
            await Promise.all(Array.from({ length: 100 }, (_, k) =>
                sendWithReceipt(client, room.id, `burst ${sent + k}`)));
    }));
    //  At once, while the store still writes the burst: rooms, 32 at a time
    const statuses = [];
    const started = Date.now();
    for (let batch = 0; batch < ROOMS / AT_ONCE; batch++)
        statuses.push(...await Promise.all(Array.from({ length: AT_ONCE }, async (_, k) => {
            const user = `creator${batch * AT_ONCE + k}`;
            const answer = await host.http('POST', '/api/rooms', host.token(user),
                { kind: 'group', name: `room of ${user}`, members: ['friend'] });
            return answer.status;
        })));
    const failed = statuses.filter((status) => status !== 201);
    console.log(`# ${ROOMS} rooms created in ${Date.now() - started} ms after a burst of ${MESSAGES}; ` +
        `${failed.length} not 201 (${[...new Set(failed)].join(', ')})`);
    assert.equal(failed.length, 0);
    assert.ok(!host.log('router').includes('went silent'), 'the router never called the store silent');
    await Promise.all(senders.map(({ client }) => client.deactivate()));
});
