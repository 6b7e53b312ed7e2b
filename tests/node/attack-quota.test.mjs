//  Rooms per user (issue 8): a user can be in at most max-rooms-per-user
//  rooms. A create or an add past it is refused with 429 naming the limit,
//  counted in /metrics; the direct room of a pair that exists is still
//  returned (it is no new room), and other users are not affected.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, waitFor } from './harness.mjs';

let host;

before(async () => {
    host = await new Host({ extra: ['--max-rooms-per-user', '3'] }).up();
});
after(async () => {
    await host?.down();
});

test('past max-rooms-per-user a create or an add gets 429 naming the limit', async () => {
    const mallory = host.token('mallory', 'Mallory');
    const first = await host.createRoom(mallory, { kind: 'direct', members: ['u1'] });
    await host.createRoom(mallory, { kind: 'group', name: 'two', members: [] });
    await host.createRoom(mallory, { kind: 'group', name: 'three', members: ['u2'] });
    const refused = await host.http('POST', '/api/rooms', mallory, { kind: 'group', name: 'four', members: [] });
    assert.equal(refused.status, 429);
    assert.match(refused.json.error, /max-rooms-per-user/);
    //  The pair's room exists: asked again, it is returned, not refused
    const again = await host.http('POST', '/api/rooms', mallory, { kind: 'direct', members: ['u1'] });
    assert.equal(again.status, 200);
    assert.equal(again.json.id, first.id);
    //  Nobody can add mallory to a fourth room either
    const other = host.token('olga', 'Olga');
    const group = await host.createRoom(other, { kind: 'group', name: 'olga', members: [] });
    const added = await host.http('POST', `/api/rooms/${group.id}/members`, other, { userId: 'mallory' });
    assert.equal(added.status, 429);
    assert.match(added.json.error, /mallory.*max-rooms-per-user/);
    //  Others are not affected
    const fine = await host.http('POST', '/api/rooms', other, { kind: 'group', name: 'fine', members: [] });
    assert.equal(fine.status, 201);
    const rooms = await host.http('GET', '/api/rooms', mallory);
    assert.equal(rooms.json.length, 3);
    await waitFor('the refusals counted', async () => await host.counter('parley_store_rooms_quota_refused_total') === 2, 5000);
});
