//  Hostile resumes (issue 8): one client subscribes to a big room 256
//  times with since-seq:0 and goes away. Other users' HTTP requests keep
//  being answered in normal time, the router never calls the persistence
//  actor silent, and a SIGTERM afterwards stops it within seconds, exit 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, rawSocket, sleep, withMongo } from './harness.mjs';

const MESSAGES = 3000;
const SUBSCRIPTIONS = 256;

let host;
//  A tight liveness rule, so a store that stops heartbeating shows quickly
before(async () => {
    host = await new Host({ extra: ['--peer-heartbeat-ms', '200', '--peer-timeout-ms', '1500'] }).up();
});
after(async () => { await host?.down(); });

//  A room of `MESSAGES` stored messages, written to MongoDB directly (fast)
async function bigRoom (owner, member) {
    const room = await host.createRoom(host.token(owner), { kind: 'direct', members: [member] });
    const now = new Date();
    const docs = Array.from({ length: MESSAGES }, (_, i) => ({
        roomId: room.id, seq: i + 1, type: 'TALK', senderId: owner, senderName: owner,
        content: `message ${i + 1} `.padEnd(200, 'x'), clientMsgId: `c${i + 1}`, createdAt: now,
    }));
    await withMongo(host.database, (db) => db.collection('messages').insertMany(docs, { ordered: false }));
    return room.id;
}

//  Raw frames: the attacker does not read what comes back
async function storm (token, roomId) {
    const socket = await rawSocket(host.url);
    socket.send(`CONNECT\naccept-version:1.2\nhost:localhost\nAuthorization:Bearer ${token}\n\n\0`);
    for (let i = 0; i < SUBSCRIPTIONS; i++)
        socket.send(`SUBSCRIBE\nid:s${i}\ndestination:/topic/rooms/${roomId}\nsince-seq:0\n\n\0`);
    return socket;
}

//  GET the room again and again until stop(); every answer with its time
async function probe (token, roomId, stop) {
    const answers = [];
    while (!stop()) {
        const started = Date.now();
        const { status } = await host.http('GET', `/api/rooms/${roomId}`, token);
        answers.push({ status, ms: Date.now() - started });
        await sleep(20);
    }
    return answers;
}

test('256 resuming subscriptions of one client starve nobody, and the store still stops at once', async () => {
    const roomId = await bigRoom('mallory', 'eve');
    const victim = host.token('victor');
    const own = await host.createRoom(victim, { kind: 'direct', members: ['vera'] });
    assert.equal((await host.http('GET', `/api/rooms/${own.id}`, victim)).status, 200);

    let done = false;
    const probing = probe(victim, own.id, () => done);
    const socket = await storm(host.token('mallory'), roomId);
    await sleep(1500);
    socket.terminate();
    await sleep(2500);
    done = true;
    const answers = await probing;

    const failed = answers.filter(({ status }) => status !== 200);
    const slowest = Math.max(...answers.map(({ ms }) => ms));
    console.log(`${answers.length} requests, ${failed.length} failed, slowest ${slowest} ms`);
    assert.equal(failed.length, 0, `failed: ${JSON.stringify(failed.slice(0, 5))}`);
    assert.ok(slowest < 1500, `slowest request took ${slowest} ms`);
    assert.doesNotMatch(host.log('router'), /persistence actor \S+ went silent/);

    //  Storm again, then stop the store in the middle of it
    const again = await storm(host.token('mallory'), roomId);
    await sleep(1000);
    again.terminate();
    const store = host.processes.get('store-0');
    const exited = new Promise((resolve) => store.once('exit', (code, signal) => resolve(code ?? signal)));
    const started = Date.now();
    store.kill('SIGTERM');
    const code = await exited;
    const took = Date.now() - started;
    console.log(`store stopped after ${took} ms with ${code}`);
    assert.equal(code, 0);
    assert.ok(took < 5000, `store took ${took} ms to stop`);
});
