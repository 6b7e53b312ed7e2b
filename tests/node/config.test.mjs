//  Configuration: one zconfig file for every actor of a host, overridden by
//  the environment and the command line; a bad value stops the actor at
//  start with a message that names the key.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, connectStomp } from './harness.mjs';

const build = process.env.PARLEY_BUILD_DIR;
const folder = mkdtempSync(join(tmpdir(), 'parley-config-'));
let host;
after(async () => {
    await host?.down();
    rmSync(folder, { recursive: true, force: true });
});

test('a bad value in the file, the environment or a flag stops the actor and names the key', () => {
    const bad = join(folder, 'bad.conf');
    writeFileSync(bad, 'parley\n    redis\n        url = "redis://127.0.0.1:6379"\n    shards = "lots"\n');
    for (const [args, env, key] of [
        [['--config', bad], {}, /shards/],
        [[], { PARLEY_SHARDS: 'lots' }, /PARLEY_SHARDS/],
        [['--port', '99999'], {}, /port/],
        [['--log-level', 'chatty'], {}, /log-level/],
        [['--config', join(folder, 'missing.conf')], {}, /missing\.conf/],
    ]) {
        const run = spawnSync(join(build, 'parley-room-router'), ['--runtime-dir', folder, ...args],
            { env: { ...process.env, ...env }, timeout: 5000 });
        assert.equal(run.status, 1, `exit 1 for ${JSON.stringify(args)} ${JSON.stringify(env)}`);
        assert.match(run.stderr.toString(), key);
    }
});

test('the file configures the host, and parleyctl mints tokens with its secret', async () => {
    host = new Host();
    const file = join(folder, 'parley.conf');
    writeFileSync(file, `# a host's configuration
parley
    jwt-secret = "${host.secret}"
    log-level = "warning"
    max-subscriptions = 3
`);
    host.extra.push('--config', file);
    await host.up();
    const env = { ...process.env };
    delete env.PARLEY_JWT_SECRET;
    const token = spawnSync(join(build, 'parleyctl'), ['token', '--config', file, '--user', 'alice'], { env });
    assert.equal(token.status, 0, token.stderr.toString());
    const client = await connectStomp(host.url, token.stdout.toString().trim());
    //  max-subscriptions from the file: the fourth is refused
    const room = await host.createRoom(host.token('alice'), { kind: 'group', name: 'g', members: [] });
    const refused = new Promise((resolve) => { client.onStompError = resolve; });
    for (let i = 0; i < 4; i++) client.subscribe(`/topic/rooms/${room.id}`, () => {});
    assert.match((await refused).headers.message, /too many subscriptions \(at most 3\)/);
    //  log-level warning from the file: no info lines
    assert.doesNotMatch(host.log('router'), /^I /m);
});
