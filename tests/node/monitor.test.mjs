//  Operators inspect a host through the actors' ZeroMQ monitor endpoints:
//  parleyctl status shows every actor from their status records, parleyctl
//  monitor tails socket events live.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import readline from 'node:readline';
import { Host, collect, sendWithReceipt, waitFor } from './harness.mjs';

const parleyctl = join(process.env.PARLEY_BUILD_DIR, 'parleyctl');
let host;
after(async () => { await host?.down(); });

test('parleyctl status lists every actor with its figures', async () => {
    host = await new Host().up();
    const room = await host.createRoom(host.token('alice'), { kind: 'direct', members: ['bob'] });
    const alice = await host.stomp(host.token('alice'));
    const bob = await host.stomp(host.token('bob'));
    await collect(bob, room.id);
    for (let i = 0; i < 10; i++) await sendWithReceipt(alice, room.id, `m${i}`);

    let records;
    await waitFor('figures that count the messages', () => {
        const run = spawnSync(parleyctl, ['status', '--runtime-dir', host.runtime, '--json']);
        if (run.status !== 0) return false;
        records = JSON.parse(run.stdout.toString());
        const bridge = records.find((r) => r.kind === 'bridge');
        return bridge?.figures?.appended >= 10;
    }, 15000);
    assert.deepEqual(records.map((r) => r.kind).sort(), ['bridge', 'conn', 'router', 'store']);
    const conn = records.find((r) => r.kind === 'conn');
    assert.equal(conn.host, 'h1');
    assert.ok(conn.figures.sessions >= 2);
    assert.ok(records.find((r) => r.kind === 'store').figures.stored >= 0);

    const table = spawnSync(parleyctl, ['status', '--runtime-dir', host.runtime]);
    assert.equal(table.status, 0);
    assert.match(table.stdout.toString(), /KIND[\s\S]*bridge[\s\S]*conn[\s\S]*router[\s\S]*store/);
    await alice.deactivate();
    await bob.deactivate();
});

test('parleyctl monitor shows a persistence actor going and coming back', async () => {
    const monitor = spawn(parleyctl, ['monitor', '--runtime-dir', host.runtime, '--json', '--actor', 'router'],
        { stdio: ['ignore', 'pipe', 'inherit'] });
    const events = [];
    readline.createInterface({ input: monitor.stdout }).on('line', (line) => events.push(JSON.parse(line)));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await host.kill('store-0');
    host.start('store-0');
    await waitFor('the router saw the store go and come back', () =>
        events.some((e) => e.event === 'DISCONNECTED' && e.socket === 'peers')
        && events.some((e) => e.event === 'ACCEPTED' && e.socket === 'peers'), 15000);
    assert.ok(events.every((e) => e.kind === 'router'), '--actor filters');
    const exited = new Promise((resolve) => monitor.once('exit', resolve));
    monitor.kill('SIGINT');
    assert.equal(await exited, 0);
    await waitFor('the store back', async () => (await fetch(`${host.base}/readyz`)).status === 200);
});

test('parleyctl says clearly when nothing runs', () => {
    const empty = mkdtempSync(join(tmpdir(), 'parley-none-'));
    const run = spawnSync(parleyctl, ['status', '--runtime-dir', empty]);
    rmSync(empty, { recursive: true, force: true });
    assert.equal(run.status, 1);
    assert.match(run.stderr.toString(), /no parley actors found/);
});
