//  The web chat's files (issue 10), served by the connection actor from
//  web-root with libwebsockets' mounts: content types, caching headers,
//  404 in JSON, no listing, no way out of the folder, GET only, every
//  answer closing; and the dev sign-in, which exists only in dev-mode.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Host, rawHttp, sendWithReceipt } from './harness.mjs';

const buildWeb = join(process.env.PARLEY_BUILD_DIR, 'web');
//  A folder of our own beside a secret no path may reach
const sandbox = mkdtempSync(join(tmpdir(), 'parley-web-'));
const root = join(sandbox, 'root');
const SECRET = 'the secret beside the web root';
let host;           //  serves the build's web chat; no dev-mode
let sandboxed;      //  serves the sandbox's root; dev-mode

const get = (port, target, headers = '') => rawHttp(port, `GET ${target} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`);

before(async () => {
    mkdirSync(join(root, 'sub'), { recursive: true });
    writeFileSync(join(root, 'index.html'), '<!doctype html><title>t</title>');
    writeFileSync(join(root, 'sub', 'a.js'), 'export const a = 1;\n');
    writeFileSync(join(root, 'b.mjs'), 'export const b = 2;\n');
    writeFileSync(join(sandbox, 'secret.txt'), SECRET);
    mkdirSync(join(sandbox, 'rootx'));
    writeFileSync(join(sandbox, 'rootx', 'secret.txt'), SECRET);
    [host, sandboxed] = await Promise.all([
        new Host({ extra: ['--http-rate', '0'] }).up(),
        new Host({ extra: ['--http-rate', '0', '--web-root', root, '--dev-mode', '1', '--web-cache-s', '300'] }).up(),
    ]);
});
after(async () => {
    await host?.down();
    await sandboxed?.down();
    rmSync(sandbox, { recursive: true, force: true });
});

function files (folder) {
    return readdirSync(folder).flatMap((name) => {
        const path = join(folder, name);
        return statSync(path).isDirectory() ? files(path) : [path];
    });
}

const TYPES = { '.html': 'text/html', '.css': 'text/css', '.js': 'text/javascript', '.mjs': 'text/javascript',
    '.svg': 'image/svg+xml', '.ico': 'image/x-icon', '.png': 'image/png' };

test('every file of the web chat is served whole, with its content type and headers', async () => {
    const all = files(buildWeb);
    assert.ok(all.some((path) => path.endsWith('vendor/stompjs/index.js')), '@stomp/stompjs is served by parley');
    assert.ok(all.length >= 5, `the build's web folder: ${all}`);
    for (const path of all) {
        const target = `/${relative(buildWeb, path)}`;
        const answer = await get(host.port, target);
        assert.equal(answer.status, 200, `${target}: ${answer.status} ${answer.text}`);
        const type = TYPES[target.slice(target.lastIndexOf('.'))];
        assert.ok(type, `${target}: a file type this test knows`);
        assert.equal(answer.headers['content-type'].split(';')[0], type, target);
        assert.deepEqual(answer.body, readFileSync(path), `${target}: the bytes`);
        assert.equal(answer.headers.connection, 'close', target);
        assert.equal(answer.open, false, `${target}: closed after the answer`);
        assert.equal(answer.headers['x-content-type-options'], 'nosniff', target);
        assert.match(answer.headers['content-security-policy'], /default-src 'self'/, target);
        assert.match(answer.headers['cache-control'], /max-age=60/, `${target}: web-cache-s`);
        assert.ok(answer.headers.etag, `${target}: etag`);
    }
    const index = await get(host.port, '/');
    assert.deepEqual(index.body, readFileSync(join(buildWeb, 'index.html')), '/ is index.html');
    assert.match(index.text, /<!doctype html>/i);
});

test('a file that is not there, a folder, and no web-root: JSON 404', async () => {
    for (const target of ['/nope.html', '/sub/', '/sub', '/sub/nope.js', '/index.html/x', '/%41bc.html'])
        for (const port of [sandboxed.port, host.port]) {
            const answer = await get(port, target);
            assert.equal(answer.status, 404, `${target}: ${answer.status} ${answer.text}`);
            assert.deepEqual(JSON.parse(answer.text), { error: 'not found' }, target);
            assert.equal(answer.headers['content-type'], 'application/json');
        }
    const bare = await new Host({ extra: ['--web-root', ''] }).up();
    try {
        const answer = await get(bare.port, '/');
        assert.equal(answer.status, 404);
        assert.deepEqual(JSON.parse(answer.text), { error: 'not found' });
    } finally {
        await bare.down();
    }
});

test('no path leads out of web-root', async () => {
    const targets = ['/../secret.txt', '/../../secret.txt', '/sub/../../secret.txt', '/%2e%2e/secret.txt',
        '/%2E%2E/secret.txt', '/.%2e/secret.txt', '/%2e./secret.txt', '/..%2fsecret.txt', '/..%2Fsecret.txt',
        '/sub/..%2f..%2fsecret.txt', '/%2e%2e%2fsecret.txt', '/..\\secret.txt', '/..%5csecret.txt',
        '/%252e%252e/secret.txt', '/./../secret.txt', '/../rootx/secret.txt', '/%2e%2e%2f%2e%2e%2fetc/passwd',
        '/..;/secret.txt', '/....//secret.txt', '//../secret.txt', `/${'../'.repeat(20)}etc/passwd`];
    for (const target of targets) {
        const answer = await get(sandboxed.port, target);
        assert.ok([400, 404].includes(answer.status), `${target}: ${answer.status} ${answer.text}`);
        assert.ok(JSON.parse(answer.text).error, target);
        assert.ok(!answer.all.includes(SECRET) && !answer.all.includes('root:'), `${target} leaked a file`);
    }
    //  What lws would resolve is refused as it is, not looked up
    const dots = await get(sandboxed.port, '/sub/../index.html');
    assert.equal(dots.status, 400);
    assert.match(JSON.parse(dots.text).error, /segments/);
});

test('GET only; a 304 and any answer close the connection (the next request is never read)', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS']) {
        const answer = await rawHttp(sandboxed.port, `${method} /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
        assert.equal(answer.status, 405, `${method}: ${answer.status}`);
        assert.equal(answer.headers.allow, 'GET', method);
        assert.ok(JSON.parse(answer.text).error, method);
    }
    const first = await get(sandboxed.port, '/sub/a.js');
    assert.equal(first.headers['content-type'], 'text/javascript');
    assert.match(first.headers['cache-control'], /max-age=300/);
    assert.equal((await get(sandboxed.port, '/b.mjs')).headers['content-type'], 'text/javascript');
    const etag = first.headers.etag;
    const next = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
    const again = await rawHttp(sandboxed.port,
        `GET /sub/a.js HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nIf-None-Match: ${etag}\r\n\r\n${next}`);
    assert.equal(again.status, 304);
    assert.equal(again.open, false, 'closed after the 304');
    assert.equal(again.all.toString().match(/HTTP\/1\.1 /g).length, 1, 'one answer: the pipelined request was not served');
    const kept = await rawHttp(sandboxed.port, `GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n${next}`);
    assert.equal(kept.status, 200);
    assert.equal(kept.all.toString().match(/HTTP\/1\.1 /g).length, 1);
    const body = await rawHttp(sandboxed.port, 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}');
    assert.equal(body.status, 400);
    //  The API is not shadowed by the files, nor the files by the API
    writeFileSync(join(root, 'healthz'), 'a file named like a probe');
    assert.deepEqual(JSON.parse((await get(sandboxed.port, '/healthz')).text), { status: 'ok' });
});

test('dev sign-in: POST /api/dev/token only in dev-mode; its token works like any other', async () => {
    const missing = await host.http('POST', '/api/dev/token', undefined, { userId: 'alice', name: 'Alice' });
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.json, { error: 'not found' });
    const answer = await sandboxed.http('POST', '/api/dev/token', undefined, { userId: 'alice', name: 'Alice Ünï' });
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(Object.keys(answer.json).sort(), ['expiresIn', 'name', 'token', 'userId']);
    assert.equal(answer.json.name, 'Alice Ünï');
    assert.equal(answer.json.expiresIn, 86400);
    const claims = JSON.parse(Buffer.from(answer.json.token.split('.')[1], 'base64url'));
    assert.equal(claims.sub, 'alice');
    assert.ok(Math.abs(claims.exp - Date.now() / 1000 - 86400) < 60);
    const token = answer.json.token;
    const room = await sandboxed.createRoom(token, { kind: 'direct', members: ['bob'] });
    const client = await sandboxed.stomp(token);
    const receipt = await sendWithReceipt(client, room.id, 'signed in by name');
    assert.ok(receipt);
    await client.deactivate();
    //  Without a name: the user id
    assert.equal((await sandboxed.http('POST', '/api/dev/token', undefined, { userId: 'bob' })).json.name, 'bob');
    for (const body of ['nope', '[]', {}, { userId: '' }, { userId: 'a b' }, { userId: 'x'.repeat(65) },
        { userId: 7 }, { userId: 'ok', name: '' }, { userId: 'ok', name: 'a\u0001' }, { userId: 'ok', name: 'n'.repeat(129) }]) {
        const refused = await sandboxed.http('POST', '/api/dev/token', undefined, body);
        assert.equal(refused.status, 400, `${JSON.stringify(body)}: ${refused.text}`);
        assert.ok(refused.json.error);
    }
});

test('a web-root that is not a folder, or dev-mode without jwt-secret: the actor does not start', () => {
    const binary = join(process.env.PARLEY_BUILD_DIR, 'parley-connection');
    const runtime = mkdtempSync(join(tmpdir(), 'parley-web-run-'));
    try {
        const common = ['--runtime-dir', runtime, '--port', '1'];
        const nowhere = spawnSync(binary, [...common, '--jwt-secret', 'x'.repeat(32), '--web-root', join(sandbox, 'none')],
            { encoding: 'utf8', timeout: 20000 });
        assert.notEqual(nowhere.status, 0);
        assert.match(nowhere.stderr, /web-root/);
        const unsigned = spawnSync(binary, [...common, '--jwt-public-key', '/dev/null', '--dev-mode', '1'],
            { encoding: 'utf8', timeout: 20000, env: { ...process.env, PARLEY_JWT_SECRET: '' } });
        assert.notEqual(unsigned.status, 0);
    } finally {
        rmSync(runtime, { recursive: true, force: true });
    }
});
