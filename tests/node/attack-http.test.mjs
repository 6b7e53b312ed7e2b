//  Hostile HTTP clients (issue 8): every query parameter is checked, every
//  refusal is JSON {"error":...} with its status and counted in /metrics,
//  requests are rate limited per user (or per address without a token),
//  and an actor out of file descriptors neither spins nor floods its log.
//  Whatever a client sends, the actor keeps serving the others.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { Host, sendWithReceipt, sleep, waitFor } from './harness.mjs';

const BODY_TIMEOUT_S = 2;
let host;
let aliceToken;
let room;

before(async () => {
    //  Rate limits out of the way here; their own test has its own host.
    //  Header lines at their most (60): where libwebsockets' table is full
    //  A short http-body-timeout-s for the test of bodies that do not come
    host = await new Host({ extra: ['--http-rate', '0', '--http-header-lines-max', '60',
        '--http-body-timeout-s', String(BODY_TIMEOUT_S)] }).up();
    aliceToken = host.token('alice', 'Alice');
    room = await host.createRoom(aliceToken, { kind: 'direct', members: ['bob'] });
    const alice = await host.stomp(aliceToken);
    for (let index = 0; index < 3; index++)
        await sendWithReceipt(alice, room.id, `message ${index}`);
    await alice.deactivate();
    await waitFor('the messages stored', async () =>
        (await host.http('GET', `/api/rooms/${room.id}/messages`, aliceToken)).json?.length === 3);
});
after(async () => {
    await host?.down();
});

//  Bytes no proper client sends (a string, or strings and pauses in ms
//  between them); resolves with the status (0: closed without an answer),
//  the head and the body, once the answer is complete (a 101's head), or
//  the connection closed.
function rawRequest (port, bytes, timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        let data = Buffer.alloc(0);
        const timer = setTimeout(() => { socket.destroy(); reject(new Error('no answer and no close')); }, timeoutMs);
        const finish = () => {
            clearTimeout(timer);
            socket.destroy();
            const text = data.toString('latin1');
            const status = Number((/^HTTP\/1\.[01] (\d{3})/.exec(text) ?? [])[1] ?? 0);
            const headers = text.split('\r\n\r\n')[0];
            resolve({ status, headers, body: text.slice(headers.length + 4) });
        };
        socket.on('data', (chunk) => {
            data = Buffer.concat([data, chunk]);
            const text = data.toString('latin1');
            const end = text.indexOf('\r\n\r\n');
            const length = /content-length: *(\d+)/i.exec(text.slice(0, end));
            if (end >= 0 && length && data.length >= end + 4 + Number(length[1])) finish();
            else if (end >= 0 && text.startsWith('HTTP/1.1 101 ')) finish();
        });
        socket.on('close', finish);
        socket.on('error', () => {});
        (async () => {
            for (const piece of [bytes].flat()) {
                if (typeof piece === 'number') await sleep(piece);
                else if (!socket.destroyed) socket.write(piece);
            }
        })();
    });
}

async function stillServes () {
    const answer = await host.http('GET', `/api/rooms/${room.id}/messages?limit=2`, aliceToken);
    assert.equal(answer.status, 200);
    assert.equal(answer.json.length, 2);
}

test('every query parameter is checked: unknown, repeated, malformed or hidden ones get 400', async () => {
    const path = `/api/rooms/${room.id}/messages`;
    let answer = await host.http('GET', `${path}?limit=2`, aliceToken);
    assert.equal(answer.status, 200);
    assert.equal(answer.json.length, 2);
    //  The attack: a parameter over 255 bytes made every later one ignored
    answer = await host.http('GET', `${path}?x=${'a'.repeat(300)}&limit=abc`, aliceToken);
    assert.equal(answer.status, 400);
    assert.match(answer.json.error, /unknown query parameter/);
    for (const query of ['limit=abc', `limit=2&y=${'b'.repeat(300)}`, 'limit=2&limit=3', 'limit=2%26x=1',
        'limit', 'before=-1', 'limit=2;x=1', 'limit=1%01']) {
        answer = await host.http('GET', `${path}?${query}`, aliceToken);
        assert.equal(answer.status, 400, `${query}: ${answer.text}`);
        assert.equal(typeof answer.json?.error, 'string', query);
    }
    answer = await host.http('GET', '/api/rooms?x=1', aliceToken);
    assert.equal(answer.status, 400);
    answer = await host.http('GET', `${path}?limit=${'1'.repeat(5000)}`, aliceToken);
    assert.equal(answer.status, 414);
    await stillServes();
});

test('refusals before routing are JSON with the right status, and counted', async () => {
    const malformed = await host.counter('parley_conn_http_refused_malformed_total');
    const sized = await host.counter('parley_conn_http_refused_size_total');
    const big = 'a'.repeat(13000);
    const auth = `Authorization: Bearer ${aliceToken}\r\n`;
    const cases = [
        ['URL over 12 KB', `GET /api/${big} HTTP/1.1\r\nHost: x\r\n\r\n`, 414],
        ['query over 12 KB', `GET /api/rooms?${big} HTTP/1.1\r\nHost: x\r\n\r\n`, 414],
        ['Authorization over 12 KB', `GET /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${big}\r\n\r\n`, 431],
        ['TRACE', 'TRACE /api/rooms HTTP/1.1\r\nHost: x\r\n\r\n', 501],
        ['an unknown method', 'BREW /api/rooms HTTP/1.1\r\nHost: x\r\n\r\n', 501],
        ['an HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 501],
        ['no HTTP at all', '\x16\x03\x01\x00\x05hello\r\n\r\n', 501],
        ['HEAD', 'HEAD /api/rooms HTTP/1.1\r\nHost: x\r\n\r\n', 405],
        ['Content-Length: abc', `POST /api/rooms HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: abc\r\n\r\n{}`, 400],
        ['Content-Length: -1', `POST /api/rooms HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: -1\r\n\r\n{}`, 400],
        ['a chunked body', `POST /api/rooms HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\n`
            + '20\r\n{"kind":"direct","members":["c"]}\r\n0\r\n\r\n', 411],
        ['a body over max-body-bytes', `POST /api/rooms HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 99999999\r\n\r\n{`, 413],
    ];
    for (const [what, bytes, status] of cases) {
        const answer = await rawRequest(host.port, bytes);
        assert.equal(answer.status, status, `${what}: ${answer.headers}`);
        assert.match(answer.headers, /content-type: application\/json/i, what);
        assert.equal(typeof JSON.parse(answer.body).error, 'string', what);
    }
    //  1,000 short headers fit in http-request-bytes, not in http-header-lines-max
    const many = Array.from({ length: 1000 }, (_, index) => `X-H${index}: v\r\n`).join('');
    const answer = await rawRequest(host.port, `GET /healthz HTTP/1.1\r\nHost: x\r\n${many}\r\n`);
    assert.equal(answer.status, 431);
    assert.match(JSON.parse(answer.body).error, /more than 60 header lines \(http-header-lines-max\)/);
    //  What libwebsockets 4.1 would refuse inside its parser, before any
    //  hook (closed, or its HTML 403): pl_gate reads the head first
    const query = Array.from({ length: 40 }, (_, index) => `p${index}=1`).join('&');
    const gated = [
        ['a head over http-request-bytes', `GET /api/rooms HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40000)}\r\n\r\n`, 431],
        ['a request line over http-request-bytes', `GET /api/${'a'.repeat(40000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414],
        ['more query parts than lws keeps', `GET /api/rooms/${room.id}/messages?${query} HTTP/1.1\r\nHost: x\r\n\r\n`, 400],
        ['a %00 in the path', 'GET /api/rooms/r%001 HTTP/1.1\r\nHost: x\r\n\r\n', 400],
        ['a %00 in the query', `GET /api/rooms/${room.id}/messages?limit=1%00 HTTP/1.1\r\nHost: x\r\n\r\n`, 400],
        ['a bad %-escape', 'GET /api/rooms/%zz HTTP/1.1\r\nHost: x\r\n\r\n', 400],
        ['an absolute-form target', 'GET http://x/api/rooms HTTP/1.1\r\nHost: x\r\n\r\n', 400],
        ['no HTTP version', 'GET /api/rooms\r\n\r\n', 400],
        ['HTTP/2.0 in the request line', 'GET /api/rooms HTTP/2.0\r\nHost: x\r\n\r\n', 505],
        ['a malformed header line', 'GET /api/rooms HTTP/1.1\r\nHost x\r\n\r\n', 400],
    ];
    for (const [what, bytes, status] of gated) {
        const answer = await rawRequest(host.port, bytes);
        assert.equal(answer.status, status, `${what}: ${answer.headers}`);
        assert.match(answer.headers, /content-type: application\/json/i, what);
        assert.equal(typeof JSON.parse(answer.body).error, 'string', what);
        await stillServes();
    }
    //  A good request after a refused one on another connection
    await stillServes();
    await waitFor('the refusals in /metrics', async () =>
        await host.counter('parley_conn_http_refused_malformed_total') >= malformed + 8 + 8
        && await host.counter('parley_conn_http_refused_size_total') >= sized + 4 + 2 + 1, 5000);
});

//  Lines of one header, count times
const lines = (header, count) => Array.from({ length: count }, (_, index) => `${header}${index}\r\n`).join('');

test('too many header lines: 431 in JSON where libwebsockets 4.1 closed without a word, counted', async () => {
    const sized = await host.counter('parley_conn_http_refused_size_total');
    //  libwebsockets keeps 92 lines of the headers it knows and query parts
    //  together: 32 query parts and 60 header lines fill it, and it still
    //  hands the request on (to the API, which knows no p0)
    const query = Array.from({ length: 32 }, (_, index) => `p${index}=1`).join('&');
    let answer = await rawRequest(host.port,
        `GET /api/rooms/${room.id}/messages?${query} HTTP/1.1\r\nHost: x\r\n${lines('X-Forwarded-For: 10.0.0.', 59)}\r\n`);
    assert.equal(answer.status, 400, answer.headers);
    assert.match(JSON.parse(answer.body).error, /unknown query parameter/);
    const refused = [
        ['61 header lines', `GET /healthz HTTP/1.1\r\nHost: x\r\n${lines('X-Forwarded-For: 10.0.0.', 60)}\r\n`],
        ['100 X-Forwarded-For lines', `GET /healthz HTTP/1.1\r\n${lines('X-Forwarded-For: 10.0.0.', 100)}\r\n`],
        ['100 Cookie lines', `GET /api/rooms HTTP/1.1\r\nHost: x\r\n${lines('Cookie: a=', 100)}\r\n`],
    ];
    for (const [what, bytes] of refused) {
        answer = await rawRequest(host.port, bytes);
        assert.equal(answer.status, 431, `${what}: ${answer.headers}`);
        assert.match(answer.headers, /content-type: application\/json/i, what);
        assert.match(answer.headers, /connection: close/i, what);
        assert.match(JSON.parse(answer.body).error, /more than 60 header lines \(http-header-lines-max\)/, what);
    }
    //  A WebSocket upgrade: libwebsockets joins the lines of
    //  Sec-WebSocket-Protocol into 127 bytes, of -Extensions into 255
    const upgrade = (more) => `GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
        + `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${more}\r\n`;
    const protocols = (count) => 'Sec-WebSocket-Protocol: v12.stomp\r\n'.repeat(count);
    const extensions = (count) => protocols(1) + 'Sec-WebSocket-Extensions: permessage-deflate\r\n'.repeat(count);
    assert.equal((await rawRequest(host.port, upgrade(protocols(10)))).status, 101);
    assert.equal((await rawRequest(host.port, upgrade(extensions(12)))).status, 101);
    for (const [what, bytes, error] of [
        ['11 Sec-WebSocket-Protocol lines', upgrade(protocols(11)), /Sec-WebSocket-Protocol over 126 bytes/],
        ['13 Sec-WebSocket-Extensions lines', upgrade(extensions(13)), /Sec-WebSocket-Extensions over 254 bytes/],
        ['a subprotocol name of 63 bytes', upgrade(`Sec-WebSocket-Protocol: ${'x'.repeat(63)}, v12.stomp\r\n`),
            /Sec-WebSocket-Protocol name over 62 bytes/],
    ]) {
        answer = await rawRequest(host.port, bytes);
        assert.equal(answer.status, 431, `${what}: ${answer.headers}`);
        assert.match(JSON.parse(answer.body).error, error, what);
    }
    await stillServes();
    await waitFor('the 431s in /metrics', async () =>
        await host.counter('parley_conn_http_refused_size_total') >= sized + 6, 5000);
});

//  A WebSocket upgrade as clients send it, with its text from replaced by to
const wsHead = (from = '', to = '') => ('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
    + 'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n'
    + 'Sec-WebSocket-Protocol: v12.stomp\r\n\r\n').replace(from, to);

test('WebSocket upgrades that libwebsockets 4.1 closed without a word: 400 in JSON naming what is wrong (426 for the version), counted', async () => {
    const malformed = await host.counter('parley_conn_http_refused_malformed_total');
    //  As clients send it, and with what RFC 6455 allows
    for (const [from, to] of [['', ''], ['Connection: Upgrade', 'Connection: keep-alive, Upgrade'],
        ['v12.stomp', 'chat, v10.stomp'], ['Sec-WebSocket-Protocol: v12.stomp\r\n', ''], ['/ws ', '/ws?x=1 ']]) {
        const answer = await rawRequest(host.port, wsHead(from, to));
        assert.equal(answer.status, 101, `${to}: ${answer.headers}`);
    }
    const cases = [
        ['no Host', 'Host: x\r\n', '', 400, /needs one Host line with a value/],
        ['no Connection', 'Connection: Upgrade\r\n', '', 400, /needs Connection: Upgrade/],
        ['Connection: keep-alive', 'Connection: Upgrade', 'Connection: keep-alive', 400, /needs Connection: Upgrade/],
        ['no Sec-WebSocket-Key', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n', '', 400,
            /Sec-WebSocket-Key must be one line of 24 base64 characters/],
        ['a short key', 'dGhlIHNhbXBsZSBub25jZQ==', 'abc', 400, /Sec-WebSocket-Key/],
        ['two key lines', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n',
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n', 400, /Sec-WebSocket-Key/],
        ['no Sec-WebSocket-Version', 'Sec-WebSocket-Version: 13\r\n', '', 426, /WebSocket version 13 only/],
        ['version 8', 'Version: 13', 'Version: 8', 426, /WebSocket version 13 only \(Sec-WebSocket-Version\)/],
        ['no STOMP subprotocol', 'v12.stomp', 'chat, superchat', 400, /no subprotocol served: offer v12.stomp, v11.stomp or v10.stomp/],
        ['a malformed subprotocol list', 'v12.stomp', ', v12.stomp', 400, /malformed Sec-WebSocket-Protocol/],
        ['Upgrade: websocket, foo', 'Upgrade: websocket', 'Upgrade: websocket, foo', 400, /Upgrade must be websocket alone/],
        ['a POST', 'GET /ws', 'POST /ws', 400, /a WebSocket upgrade is an HTTP\/1.1 GET/],
        ['another path', 'GET /ws ', 'GET /api/rooms ', 404, /WebSocket is served on \/ws only/],
    ];
    for (const [what, from, to, status, error] of cases) {
        const answer = await rawRequest(host.port, wsHead(from, to));
        assert.equal(answer.status, status, `${what}: ${answer.headers}`);
        assert.match(answer.headers, /\r\ncontent-type: application\/json\r\n/i, what);
        assert.match(JSON.parse(answer.body).error, error, what);
        if (status === 426) {
            //  RFC 6455 4.4: the version served; RFC 9110: what to upgrade to
            assert.match(answer.headers, /\r\nsec-websocket-version: 13\r\n/i, what);
            assert.match(answer.headers, /\r\nupgrade: websocket\r\n/i, what);
            assert.match(answer.headers, /\r\nconnection: upgrade, close(\r\n|$)/i, what);
        } else
            assert.match(answer.headers, /\r\nconnection: close(\r\n|$)/i, what);
        await stillServes();
    }
    await waitFor('the refusals in /metrics', async () =>
        await host.counter('parley_conn_http_refused_malformed_total') >= malformed + cases.length - 1, 5000);
});

test('an upgrade to anything but websocket is left out: the request is served as HTTP/1.1 (501 in JSON with a body)', async () => {
    //  curl --http2 on http:// asks for h2c; libwebsockets switched to HTTP/2
    const h2c = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n';
    let answer = await rawRequest(host.port, `GET /api/rooms/${room.id}/messages?limit=2 HTTP/1.1\r\nHost: x\r\n`
        + `Authorization: Bearer ${aliceToken}\r\n${h2c}\r\n`);
    assert.equal(answer.status, 200, answer.headers);
    assert.match(answer.headers, /\r\nconnection: close(\r\n|$)/i);
    assert.equal(JSON.parse(answer.body).length, 2);
    //  Another upgrade: libwebsockets answered its HTML 403
    answer = await rawRequest(host.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n');
    assert.equal(answer.status, 200, answer.headers);
    assert.deepEqual(JSON.parse(answer.body), { status: 'ok' });
    //  A body after a head that is not the client's: refused
    answer = await rawRequest(host.port, `POST /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${aliceToken}\r\n`
        + `${h2c}Content-Length: 2\r\n\r\n{}`);
    assert.equal(answer.status, 501, answer.headers);
    assert.match(answer.headers, /content-type: application\/json/i);
    assert.match(JSON.parse(answer.body).error, /upgrade not served: send the request without Upgrade/);
    await stillServes();
});

test('a request body that does not come: 408 in JSON after http-body-timeout-s where libwebsockets closed without a word, counted', async () => {
    const timedOut = await host.counter('parley_conn_http_refused_timeout_total');
    const post = (length) => `POST /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${aliceToken}\r\n`
        + `Content-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
    const head = post(40);
    const started = Date.now();
    const answers = await Promise.all([
        rawRequest(host.port, head),
        rawRequest(host.port, `${head}{"kind":"direct",`),
        //  Pieces that keep coming do not buy more time: it counts from the head
        rawRequest(host.port, [head, ...Array.from({ length: 8 }, () => [600, ' ']).flat()]),
    ]);
    for (const answer of answers) {
        assert.equal(answer.status, 408, answer.headers);
        assert.match(answer.headers, /\r\ncontent-type: application\/json\r\n/i);
        assert.match(answer.headers, /\r\nconnection: close(\r\n|$)/i);
        assert.deepEqual(JSON.parse(answer.body),
            { error: `request body not received within ${BODY_TIMEOUT_S} s (http-body-timeout-s)` });
    }
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= BODY_TIMEOUT_S * 1000 - 100 && elapsed < BODY_TIMEOUT_S * 1000 + 3000, `${elapsed} ms`);
    //  A body that comes in pieces within the time is served
    const body = JSON.stringify({ kind: 'direct', members: ['carol'] });
    const answer = await rawRequest(host.port, [post(body.length), body.slice(0, 10), 1000, body.slice(10)]);
    assert.ok(answer.status === 200 || answer.status === 201, answer.headers);
    assert.equal(JSON.parse(answer.body).kind, 'direct');
    await stillServes();
    await waitFor('the 408s in /metrics', async () =>
        await host.counter('parley_conn_http_refused_timeout_total') >= timedOut + 3, 5000);
});

test('HTTP requests are rate limited per user, and per address without a token: 429 with Retry-After', async () => {
    const limited = await new Host({ extra: ['--http-rate', '2', '--http-burst', '4'] }).up();
    try {
        const carol = limited.token('carol', 'Carol');
        const dave = limited.token('dave', 'Dave');
        const answers = [];
        for (let index = 0; index < 8; index++)
            answers.push(await limited.http('GET', '/api/rooms', carol));
        const refused = answers.filter((answer) => answer.status === 429);
        assert.ok(refused.length >= 3, `only ${refused.length} of 8 refused`);
        assert.match(refused[0].json.error, /rate limit.*http-rate/);
        const response = await fetch(`${limited.base}/api/rooms`, { headers: { authorization: `Bearer ${carol}` } });
        assert.equal(response.status, 429);
        const retryAfter = Number(response.headers.get('retry-after'));
        assert.ok(retryAfter >= 1 && retryAfter <= 2, `Retry-After ${retryAfter}`);
        //  Another user is not affected; carol is served again after the wait
        assert.equal((await limited.http('GET', '/api/rooms', dave)).status, 200);
        await sleep(retryAfter * 1000);
        assert.equal((await limited.http('GET', '/api/rooms', carol)).status, 200);
        //  Without a token: the address's own bucket
        let status = 200;
        for (let index = 0; index < 10 && status !== 429; index++)
            status = (await limited.http('GET', '/api/rooms/r1', 'forged')).status;
        assert.equal(status, 429);
        await waitFor('the 429s in /metrics',
            async () => await limited.counter('parley_conn_http_rate_limited_total') >= 5, 5000);
    } finally {
        await limited.down();
    }
});

//  CPU ticks (user + system) a process used so far
function cpuTicks (pid) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(fields[11]) + Number(fields[12]);
}

test('out of file descriptors, the actor neither spins nor floods its log, and serves again', async () => {
    const pid = host.pid('conn-0');
    const open = readdirSync(`/proc/${pid}/fd`).length;
    const opened = [];
    //  The soft limit only: the hard one could not be raised again
    const soft = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))[1];
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${open + 8}:`]);
    try {
        for (let index = 0; index < 40; index++) {
            const socket = net.connect(host.port, '127.0.0.1');
            socket.received = '';
            socket.on('data', (chunk) => { socket.received += chunk.toString(); });
            socket.on('error', () => {});
            opened.push(socket);
        }
        await sleep(300);
        const logBefore = host.log('conn-0').length;
        const ticksBefore = cpuTicks(pid);
        await sleep(2000);
        const ticks = cpuTicks(pid) - ticksBefore;
        const logged = host.log('conn-0').length - logBefore;
        assert.ok(ticks < 40, `${ticks} CPU ticks in 2 s while out of descriptors`);
        assert.ok(logged < 2000, `${logged} bytes of log in 2 s`);
        assert.match(host.log('conn-0'), /accept: Too many open files; pausing/);
        //  Those that could not get in heard 503 in JSON, not silence
        const told = opened.filter((socket) => / 503 /.test(socket.received));
        assert.ok(told.length > 0);
        assert.match(told[0].received, /\{"error":"server out of connections, try again"\}/);
    } finally {
        for (const socket of opened) socket.destroy();
    }
    await waitFor('the actor to serve again', async () =>
        (await host.http('GET', `/api/rooms/${room.id}/messages?limit=1`, aliceToken)).status === 200, 10000);
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${soft}:`]);
    await waitFor('the pauses in /metrics', async () => await host.counter('parley_conn_accept_pauses_total') > 0
        && await host.counter('parley_conn_accept_shed_total') > 0, 5000);
});
