//  Per-actor scaling on one host: three connection actors on one port and
//  two persistence actors. Load spreads over them; killing one connection
//  actor drops only its own clients, who reconnect to the others and resume.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';
import { Host, collect, sendWithReceipt, sleep, waitFor } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const folder = mkdtempSync(join(tmpdir(), 'parley-scaling-'));
let host;
let receiver;
after(async () => {
    receiver?.stdin.end();
    try {
        await host?.down();
    } finally {
        rmSync(folder, { recursive: true, force: true });
    }
});

const actorOf = (client) => client.connectedFrame.headers.session.split('-').slice(-2, -1)[0];

test('three connection and two persistence actors share the work; one dies, its clients resume elsewhere', async () => {
    //  The persistence actors' STATUS lines (systemd notify) say how much each stored
    receiver = spawn('python3', [join(here, '..', 'notify-receiver.py'), folder, 'store-0', 'store-1'],
        { stdio: ['pipe', 'pipe', 'inherit'] });
    const stored = { 'store-0': 0, 'store-1': 0 };
    readline.createInterface({ input: receiver.stdout }).on('line', (line) => {
        const { name, message } = JSON.parse(line);
        const match = /^STATUS=.*\bstored=(\d+)/.exec(message);
        if (match) stored[name] = Number(match[1]);
    });
    host = await new Host({
        conn: 3, store: 2, extra: ['--store-batch', '16'],
        env: (name) => (name.startsWith('store') ? { NOTIFY_SOCKET: join(folder, `${name}.notify`) } : {}),
    }).up();

    //  12 rooms, a sender and a reader each; the kernel spreads the sessions
    const pairs = [];
    for (let r = 0; r < 12; r++) {
        const room = await host.createRoom(host.token(`s${r}`), { kind: 'direct', members: [`r${r}`] });
        const sender = await host.stomp(host.token(`s${r}`));
        const reader = await host.stomp(host.token(`r${r}`));
        pairs.push({ room, sender, reader, seen: await collect(reader, room.id) });
    }
    const perActor = {};
    for (const { sender, reader } of pairs)
        for (const client of [sender, reader]) perActor[actorOf(client)] = (perActor[actorOf(client)] ?? 0) + 1;
    console.log(`# sessions per connection actor: ${JSON.stringify(perActor)}`);
    assert.equal(Object.keys(perActor).length, 3, 'every connection actor has sessions');

    const send = (count) => Promise.all(pairs.flatMap(({ room, sender }) =>
        Array.from({ length: count }, (_, i) => sendWithReceipt(sender, room.id, `m${i}`).catch(() => null))));
    await send(100);
    await waitFor('both stores reported', () => stored['store-0'] + stored['store-1'] >= 1200, 20000);
    console.log(`# stored per persistence actor: ${JSON.stringify(stored)}`);
    assert.ok(stored['store-0'] > 0 && stored['store-1'] > 0, 'both persistence actors stored');

    //  conn-1 dies: only its sessions close
    await host.kill('conn-1');
    await sleep(300);
    for (const pair of pairs)
        for (const client of [pair.sender, pair.reader])
            assert.equal(client.closed, actorOf(client) === '1', 'closed exactly when on conn-1');

    //  Whoever lost a session reconnects (to the two left); readers resume
    //  after the last seq they saw
    for (const [r, pair] of pairs.entries()) {
        if (pair.sender.closed) pair.sender = await host.stomp(host.token(`s${r}`));
        if (pair.reader.closed) {
            const last = pair.seen.at(-1)?.body.seq ?? 0;
            pair.reader = await host.stomp(host.token(`r${r}`));
            assert.notEqual(actorOf(pair.reader), '1');
            pair.rest = await collect(pair.reader, pair.room.id, { 'since-seq': String(last) });
        }
    }
    await send(50);
    for (const pair of pairs) {
        const all = () => [...pair.seen, ...(pair.rest ?? [])].map((m) => m.body.seq);
        await waitFor('every message once, in order', () => all().length >= 1200 / 12 + 50, 20000);
        await sleep(100);
        assert.deepEqual(all(), Array.from({ length: 150 }, (_, i) => i + 1));
    }
    await Promise.all(pairs.flatMap(({ sender, reader }) => [sender.deactivate(), reader.deactivate()]));
});
