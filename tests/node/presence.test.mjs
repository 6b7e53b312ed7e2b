//  Presence across two hosts: ENTER once when a member's first session
//  (any host) subscribes to the room, LEAVE once after its last one; a
//  killed connection actor and a killed host take their users offline;
//  GET /api/rooms/{id} lists who is online.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, sleep, waitFor } from './harness.mjs';

const hosts = [];
after(async () => { for (const host of hosts) await host.down(); });

const TIMEOUT_S = 3;
const presence = (list) => list.filter((m) => m.body.type === 'ENTER' || m.body.type === 'LEAVE')
    .map((m) => `${m.body.type} ${m.body.userId}`);

test('ENTER and LEAVE once per user across sessions on two hosts; hosts that die', async () => {
    const extra = ['--presence-timeout-s', String(TIMEOUT_S)];
    const a = await new Host({ hostId: 'pa', extra }).up();
    hosts.push(a);
    const b = await a.sibling('pb', { extra });
    hosts.push(b);
    //  Past the learning time of a starting host
    await sleep(TIMEOUT_S * 1000 / 3 + 1500);
    const token = (user) => a.token(user, user.toUpperCase());
    const room = await a.createRoom(token('carol'), { kind: 'group', name: 'who is here', members: ['bob', 'dave', 'erin'] });
    const carol = await a.stomp(token('carol'));
    const carolSees = await collect(carol, room.id);
    await waitFor('carol herself', () => presence(carolSees).includes('ENTER carol'), 10000);

    //  bob on both hosts: one ENTER, one LEAVE
    const bobOnA = await a.stomp(token('bob'));
    const bobOnB = await b.stomp(token('bob'));
    await collect(bobOnA, room.id);
    await waitFor('ENTER bob', () => presence(carolSees).includes('ENTER bob'), 10000);
    const bobOnBSees = await collect(bobOnB, room.id);
    await waitFor('bob online on host B', async () => {
        const answer = await b.http('GET', `/api/rooms/${room.id}`, token('carol'));
        return answer.status === 200 && answer.json.online.includes('bob') && answer.json.online.includes('carol');
    }, 10000);
    await bobOnA.deactivate();
    await sleep(1500);
    assert.deepEqual(presence(carolSees).filter((e) => e.endsWith(' bob')), ['ENTER bob'], 'no LEAVE while bob is on host B');
    bobOnBSees.subscription.unsubscribe();
    await waitFor('LEAVE bob', () => presence(carolSees).includes('LEAVE bob'), 10000);
    await sleep(1000);
    assert.deepEqual(presence(carolSees).filter((e) => e.endsWith(' bob')), ['ENTER bob', 'LEAVE bob']);

    //  A connection actor killed: its users leave
    const dave = await b.stomp(token('dave'));
    await collect(dave, room.id);
    await waitFor('ENTER dave', () => presence(carolSees).includes('ENTER dave'), 10000);
    await b.kill('conn-0');
    await waitFor('LEAVE dave after the kill', () => presence(carolSees).includes('LEAVE dave'), 20000);
    b.start('conn-0');
    await waitFor('host B serves again', async () => {
        try { return (await fetch(`${b.base}/readyz`)).status === 200; } catch { return false; }
    }, 20000);

    //  A whole host killed: its users leave within the presence timeout
    const erin = await b.stomp(token('erin'));
    await collect(erin, room.id);
    await waitFor('ENTER erin', () => presence(carolSees).includes('ENTER erin'), 10000);
    for (const name of ['conn-0', 'router', 'bridge', 'store-0']) await b.kill(name);
    const killed = Date.now();
    await waitFor('LEAVE erin after the host died', () => presence(carolSees).includes('LEAVE erin'), 20000);
    assert.ok(Date.now() - killed < (TIMEOUT_S + 3) * 1000, `LEAVE took ${Date.now() - killed} ms`);
    const online = (await a.http('GET', `/api/rooms/${room.id}`, token('carol'))).json.online;
    assert.deepEqual(online, ['carol']);
    await carol.deactivate();
});
