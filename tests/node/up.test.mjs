//  bin/parley up: one host's actors against an existing Redis and MongoDB,
//  supervised in the foreground (a crashed actor starts again), stopped
//  with SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { Host, collect, sendWithReceipt, sleep, waitFor } from './harness.mjs';

const top = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

//  pids of this host's actor processes, found by their runtime folder
function actorPids (runtime, binary = 'parley-') {
    try {
        return execFileSync('pgrep', ['-f', `${binary}.*--runtime-dir ${runtime}`]).toString().trim().split('\n').map(Number);
    } catch {
        return [];
    }
}

test('up runs --conn 2 --store 2, restarts a crashed actor and stops on SIGTERM', async () => {
    //  Host is used only for its helpers (tokens, HTTP, STOMP); up starts the actors
    const host = new Host();
    host.port = await (await import('./harness.mjs')).freePort();
    host.base = `http://127.0.0.1:${host.port}`;
    host.url = `ws://127.0.0.1:${host.port}/ws`;
    const runtime = mkdtempSync(join(tmpdir(), 'parley-up-'));
    const up = spawn(join(top, 'bin', 'parley'), ['up', '--host-id', 'hup', '--port', String(host.port),
        '--redis', process.env.PARLEY_TEST_REDIS_URL, '--mongo', process.env.PARLEY_TEST_MONGO_URL,
        '--runtime-dir', runtime, '--jwt-secret', host.secret, '--conn', '2', '--store', '2',
        '--key-prefix', host.prefix, '--mongo-db', host.database],
        { stdio: ['ignore', 'inherit', 'pipe'], env: { ...process.env, PARLEY_SANITIZE: process.env.PARLEY_BUILD_DIR.endsWith('-asan') ? '1' : '0' } });
    let log = '';
    up.stderr.on('data', (data) => { log += data; });
    const exited = new Promise((resolve) => up.once('exit', (code, signal) => resolve(code ?? signal)));
    try {
        await waitFor('the host to be ready', async () => (await fetch(`${host.base}/readyz`)).status === 200);
        assert.equal(actorPids(runtime).length, 6, 'bridge, router, 2 persistence, 2 connection actors');

        const aliceToken = host.token('alice', 'Alice');
        const room = await host.createRoom(aliceToken, { kind: 'direct', members: ['bob'] });
        const alice = await host.stomp(aliceToken);
        const bob = await host.stomp(host.token('bob', 'Bob'));
        const bobSees = await collect(bob, room.id);
        assert.equal(await sendWithReceipt(alice, room.id, 'one'), 1);

        //  kill -9 the router: up starts it again and the host recovers
        const [router] = actorPids(runtime, 'parley-room-router');
        process.kill(router, 'SIGKILL');
        await waitFor('a new router', () => {
            const pids = actorPids(runtime, 'parley-room-router');
            return pids.length === 1 && pids[0] !== router;
        });
        await waitFor('the host to be ready again', async () => (await fetch(`${host.base}/readyz`)).status === 200);
        //  The connection actors tell a new router their rooms at their next
        //  PING (every second); what is delivered before that reaches their
        //  subscribers only through since-seq resume
        await sleep(1500);
        //  Sessions survive: the connection actors send their rooms again
        await waitFor('a send through the new router', async () => {
            try { return await sendWithReceipt(alice, room.id, 'two') >= 2; } catch { return false; }
        });
        await waitFor('delivery after the restart', () => bobSees.some((m) => m.body.content === 'two'));
        await alice.deactivate();
        await bob.deactivate();
    } finally {
        up.kill('SIGTERM');
        const code = await exited;
        assert.equal(code, 0, `up exited with ${code}\n${log}`);
        await sleep(200);
        assert.deepEqual(actorPids(runtime), [], 'every actor stopped with up');
        rmSync(runtime, { recursive: true, force: true });
    }
});
