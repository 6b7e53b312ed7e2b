//  Type=notify: each actor sends READY=1 once its sockets are bound and its
//  peers reachable, WATCHDOG=1 from its loop, a STATUS= line with its
//  figures, and STOPPING=1 when SIGTERM makes it drain. A python stand-in
//  for systemd's notify socket receives them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';
import { Host, waitFor } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const folder = mkdtempSync(join(tmpdir(), 'parley-notify-'));
const names = ['bridge', 'router', 'store-0', 'conn-0'];
let receiver;
let host;
after(async () => {
    receiver?.stdin.end();
    rmSync(folder, { recursive: true, force: true });
});

test('every actor says READY, WATCHDOG, STATUS and STOPPING', async () => {
    receiver = spawn('python3', [join(here, '..', 'notify-receiver.py'), folder, ...names],
        { stdio: ['pipe', 'pipe', 'inherit'] });
    const received = new Map(names.map((name) => [name, []]));
    let listening = false;
    readline.createInterface({ input: receiver.stdout }).on('line', (line) => {
        const { name, message } = JSON.parse(line);
        if (!name) listening = true;
        else received.get(name).push(message);
    });
    await waitFor('the notify stand-in', () => listening);
    host = new Host({
        env: (name) => ({ NOTIFY_SOCKET: join(folder, `${name}.notify`), WATCHDOG_USEC: '400000' }),
    });
    await host.up();
    const has = (name, pattern) => received.get(name).some((message) => pattern.test(message));
    for (const name of names) {
        await waitFor(`${name} READY`, () => has(name, /^READY=1\nSTATUS=.+/), 15000);
        await waitFor(`${name} WATCHDOG`, () => received.get(name).filter((m) => m === 'WATCHDOG=1').length >= 2);
        await waitFor(`${name} STATUS`, () => has(name, /^STATUS=.+/));
    }
    assert.ok(has('bridge', /^STATUS=.*\bappended=\d+/));
    assert.ok(has('conn-0', /^STATUS=.*\bsessions=\d+/));
    await host.down();
    for (const name of names)
        await waitFor(`${name} STOPPING`, () => has(name, /^STOPPING=1/));
});
