//  Test harness: starts one parley host (the real actor processes) against
//  the test servers that tests/servers.sh started, and gives tests real
//  clients: @stomp/stompjs over ws, fetch for HTTP, the MongoDB driver to
//  count what was stored.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { MongoClient } from 'mongodb';

const buildDir = process.env.PARLEY_BUILD_DIR;
const redisUrl = process.env.PARLEY_TEST_REDIS_URL;
const mongoUrl = process.env.PARLEY_TEST_MONGO_URL;
if (!buildDir || !redisUrl || !mongoUrl)
    throw new Error('run through ctest (bin/parley test): PARLEY_BUILD_DIR and the server URLs are missing');

const binaries = {
    bridge: 'parley-stream-bridge',
    router: 'parley-room-router',
    store: 'parley-persistence',
    conn: 'parley-connection',
};

//  Actors built with AddressSanitizer: their resident memory says little
//  (freed memory waits in ASan's quarantine)
export const sanitized = buildDir.endsWith('-asan');

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
//  A sleep that does not keep the test process alive (for races)
export const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms).unref());

export async function freePort () {
    return new Promise((resolve, reject) => {
        const server = net.createServer();
        server.listen(0, '127.0.0.1', () => {
            const { port } = server.address();
            server.close(() => resolve(port));
        });
        server.on('error', reject);
    });
}

//  redis-cli against a loopback port: what it printed, '' when it failed
export function redisCli (port, ...args) {
    try {
        return execFileSync('redis-cli', ['-p', String(port), ...args],
            { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch { return ''; }
}

//  Whether the redis-server on port is a replica with its link to the
//  primary up
export const replicaLinked = (port) => redisCli(port, 'info', 'replication').includes('master_link_status:up');

//  A throwaway redis-server on loopback: port, its files in dir (the
//  caller's), no snapshots, then args (e.g. AOF, --replicaof). Resolves
//  with the process once it answers PING.
export async function startRedis (port, dir, ...args) {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
        '--save', '', ...args], { stdio: 'ignore' });
    await waitFor(`redis-server on ${port}`, () => redisCli(port, 'ping') === 'PONG');
    return child;
}

//  A loopback port free for a cluster node, which also listens on port +
//  10000 (its bus): ephemeral ports (up to 60999) do not do
export async function clusterPort () {
    const free = (port) => new Promise((resolve) => {
        const server = net.createServer();
        server.once('error', () => resolve(false));
        server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    for (;;) {
        const port = 20000 + Math.floor(Math.random() * 20000);
        if (await free(port) && await free(port + 10000)) return port;
    }
}

//  A Redis Cluster node on port, its files (nodes.conf, AOF) in dir/port,
//  then args. Started again on the same port and folder, it rejoins.
export async function startClusterNode (dir, port, ...args) {
    const folder = join(dir, String(port));
    mkdirSync(folder, { recursive: true });
    return startRedis(port, folder, '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
        '--appendonly', 'yes', ...args);
}

//  A Redis Cluster of masters with replicas each (redis-cli --cluster
//  create), every node started with args. Resolves with the nodes
//  ({ port, child }), the url that seeds parley with all of them, once
//  every node says cluster_state:ok and every replica is linked.
export async function startCluster (dir, { masters = 3, replicas = 0, args = [] } = {}) {
    const nodes = [];
    for (let i = 0; i < masters * (1 + replicas); i++) {
        const port = await clusterPort();
        nodes.push({ port, child: await startClusterNode(dir, port, ...args) });
    }
    execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map(({ port }) => `127.0.0.1:${port}`),
        '--cluster-replicas', String(replicas), '--cluster-yes'], { stdio: 'ignore' });
    for (const { port } of nodes)
        await waitFor('cluster ok', () => redisCli(port, 'cluster', 'info').includes('cluster_state:ok'));
    for (const { port } of nodes)
        await waitFor('replica linked', () => redisCli(port, 'role').startsWith('master') || replicaLinked(port));
    return { nodes, url: `redis://${nodes.map(({ port }) => `127.0.0.1:${port}`).join(',')}` };
}

//  Every host a test started, so a timeout can show what the actors said
const liveHosts = new Set();

export async function waitFor (what, check, timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        try {
            if (await check()) return;
        } catch { /* not yet */ }
        if (Date.now() > deadline) {
            for (const host of liveHosts)
                for (const name of host.processes.keys())
                    console.error(`--- ${host.hostId} ${name}, last lines:\n${host.log(name).split('\n').slice(-15).join('\n')}`);
            throw new Error(`timed out waiting for ${what}`);
        }
        await sleep(100);
    }
}

//  One host: bridge, router, `store` persistence actors and `conn`
//  connection actors sharing one port. Every host of a test shares the
//  test's key prefix and database unless told otherwise.
export class Host {
    constructor ({ conn = 1, store = 1, hostId = 'h1', prefix, database, secret, redisUrl: redis, extra = [], env } = {}) {
        this.conn = conn;
        this.store = store;
        this.hostId = hostId;
        this.prefix = prefix ?? `t${randomBytes(4).toString('hex')}`;
        this.database = database ?? `parley_${this.prefix}`;
        this.secret = secret ?? randomBytes(24).toString('hex');
        this.extra = extra;
        this.env = env ?? (() => ({}));        //  name -> extra environment of that actor
        this.redisUrl = redis ?? redisUrl;
        this.runtime = mkdtempSync(join(tmpdir(), 'parley-host-'));
        liveHosts.add(this);
        this.processes = new Map();
        this.logs = new Map();
    }

    args (instance) {
        return ['--host-id', this.hostId, '--runtime-dir', this.runtime, '--port', String(this.port),
            '--redis-url', this.redisUrl, '--mongo-url', mongoUrl, '--mongo-db', this.database,
            '--key-prefix', this.prefix, '--jwt-secret', this.secret, '--instance', String(instance),
            '--block-ms', '200', '--web-root', join(buildDir, 'web'), ...this.extra];
    }

    //  Start (or start again) one actor process by name: bridge, router,
    //  store-N, conn-N.
    start (name) {
        const [kind, instance = '0'] = name.split('-');
        const child = spawn(join(buildDir, binaries[kind]), this.args(Number(instance)),
            { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...this.env(name) } });
        const log = this.logs.get(name) ?? [];
        child.stderr.on('data', (data) => {
            log.push(data.toString());
            if (process.env.PARLEY_TEST_VERBOSE) process.stderr.write(`[${this.hostId} ${name}] ${data}`);
        });
        this.logs.set(name, log);
        this.processes.set(name, child);
        return child;
    }

    async up () {
        this.port = this.port ?? await freePort();
        this.start('bridge');
        this.start('router');
        for (let i = 0; i < this.store; i++) this.start(`store-${i}`);
        for (let i = 0; i < this.conn; i++) this.start(`conn-${i}`);
        this.base = `http://127.0.0.1:${this.port}`;
        this.url = `ws://127.0.0.1:${this.port}/ws`;
        try {
            await waitFor('the host to be ready', async () => (await fetch(`${this.base}/readyz`)).status === 200);
        } catch (error) {
            for (const name of this.processes.keys()) console.error(`--- ${name}\n${this.log(name)}`);
            await this.down();
            throw error;
        }
        return this;
    }

    pid (name) { return this.processes.get(name).pid; }

    //  kill -9 (or another signal) and wait until it is gone
    async kill (name, signal = 'SIGKILL') {
        const child = this.processes.get(name);
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill(signal);
        await exited;
    }

    //  Stop every actor with SIGTERM. Each must exit 0 by itself (a
    //  graceful stop; under ASan also: no leak), and no log may hold a
    //  sanitizer report. Actors this test killed with -9 are not asked.
    async down () {
        const running = [...this.processes.entries()]
            .filter(([, child]) => child.exitCode === null && child.signalCode === null);
        const codes = await Promise.all(running.map(async ([name, child]) => {
            const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ name, code, signal })));
            child.kill('SIGTERM');
            const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
            const result = await exited;
            clearTimeout(timer);
            return result;
        }));
        rmSync(this.runtime, { recursive: true, force: true });
        liveHosts.delete(this);
        const problems = codes.filter(({ code }) => code !== 0)
            .map(({ name, code, signal }) => `${name} exited with ${code ?? signal} after SIGTERM`);
        for (const name of this.processes.keys())
            if (/ERROR: (Address|Leak)Sanitizer|runtime error:/.test(this.log(name)))
                problems.push(`${name} logged a sanitizer report:\n${this.log(name)}`);
        if (problems.length) throw new Error(problems.join('\n'));
    }

    log (name) { return (this.logs.get(name) ?? []).join(''); }

    token (user, name = user, ttl = 3600) {
        return execFileSync(join(buildDir, 'parleyctl'),
            ['token', '--secret', this.secret, '--user', user, '--name', name, '--ttl', String(ttl)])
            .toString().trim();
    }

    //  A token made here rather than by parleyctl, for claims parleyctl
    //  refuses to mint (expired, missing)
    forgeToken (claims, secret = this.secret) {
        const part = (object) => Buffer.from(JSON.stringify(object)).toString('base64url');
        const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
        return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
    }

    async http (method, path, token, body) {
        const headers = { 'content-type': 'application/json' };
        if (token) headers.authorization = `Bearer ${token}`;
        const response = await fetch(`${this.base}${path}`, {
            method, headers, body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
        });
        const text = await response.text();
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        return { status: response.status, json, text };
    }

    //  503 means "try again" (a persistence actor is restarting, say)
    async createRoom (token, request) {
        let answer = await this.http('POST', '/api/rooms', token, request);
        for (let tries = 0; answer.status === 503 && tries < 100; tries++) {
            await sleep(100);
            answer = await this.http('POST', '/api/rooms', token, request);
        }
        if (answer.status !== 201 && answer.status !== 200)
            throw new Error(`room not created: ${answer.status} ${answer.text}`);
        return answer.json;
    }

    //  The sum of a counter's samples in this host's /metrics (0 when absent)
    async counter (name) {
        const text = await (await fetch(`${this.base}/metrics`)).text();
        let total = 0;
        for (const line of text.split('\n'))
            if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.split(' ').pop());
        return total;
    }

    //  Another host of the same service: this one's key prefix, database
    //  and secret, its own id (and whatever else options say), started
    async sibling (hostId, options = {}) {
        return new Host({ ...options, hostId, prefix: this.prefix, database: this.database, secret: this.secret }).up();
    }

    //  A connected @stomp/stompjs client. Errors and closes are recorded
    //  on client.errors / client.closed instead of throwing.
    async stomp (token, { headers = {}, url = this.url } = {}) {
        return connectStomp(url, token, headers);
    }
}

//  heartbeatMs: both ways (0: none; @stomp/stompjs's own default is 10000)
export async function connectStomp (url, token, headers = {}, heartbeatMs = 0) {
    const client = new Client({
        webSocketFactory: () => new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp']),
        connectHeaders: token ? { Authorization: `Bearer ${token}`, ...headers } : headers,
        reconnectDelay: 0,
        heartbeatIncoming: heartbeatMs,
        heartbeatOutgoing: heartbeatMs,
        debug: () => {},
    });
    client.errors = [];
    client.closed = false;
    const connected = new Promise((resolve, reject) => {
        client.onConnect = (frame) => { client.connectedFrame = frame; resolve(client); };
        client.onStompError = (frame) => { client.errors.push(frame); reject(new Error(frame.headers.message)); };
        client.onWebSocketClose = () => { client.closed = true; reject(new Error('closed before CONNECTED')); };
    });
    client.activate();
    try {
        await connected;
    } finally {
        client.onStompError = (frame) => client.errors.push(frame);
        client.onWebSocketClose = () => { client.closed = true; };
    }
    return client;
}

//  Send one TALK message and resolve with the seq its RECEIPT names.
export function sendWithReceipt (client, roomId, content, clientMsgId = randomUUID(), extra = {}) {
    const receipt = `r-${randomUUID()}`;
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no RECEIPT for ${clientMsgId}`)), 30000).unref();
        client.watchForReceipt(receipt, (frame) => {
            clearTimeout(timer);
            resolve(Number(frame.headers.seq));
        });
        client.publish({
            destination: `/app/rooms/${roomId}`,
            headers: { receipt },
            body: JSON.stringify({ type: 'TALK', content, clientMsgId, ...extra }),
        });
    });
}

//  Subscribe and collect every delivered body in arrival order.
export async function collect (client, roomId, headers = {}) {
    const received = [];
    const receipt = `s-${randomUUID()}`;
    const confirmed = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
    const subscription = client.subscribe(`/topic/rooms/${roomId}`,
        (message) => received.push({ headers: message.headers, body: JSON.parse(message.body) }),
        { receipt, ...headers });
    await confirmed;
    received.subscription = subscription;
    return received;
}

//  Subscribe to /user/queue/events and collect every event body in
//  arrival order. An ERROR event that names a receipt goes to the function
//  waiting for it in events.waiters (receipt -> fn), if any.
export async function userEvents (client) {
    const events = [];
    events.waiters = new Map();
    const receipt = `e-${randomUUID()}`;
    const confirmed = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
    client.subscribe('/user/queue/events', (message) => {
        const event = JSON.parse(message.body);
        events.push(event);
        events.waiters.get(event.receiptId)?.(event);
    }, { receipt });
    await confirmed;
    return events;
}

export async function withMongo (database, fn) {
    const client = new MongoClient(mongoUrl, { serverSelectionTimeoutMS: 10000 });
    await client.connect();
    try {
        return await fn(client.db(database));
    } finally {
        await client.close();
    }
}

//  Raw WebSocket, for bytes no proper client would send.
export function rawSocket (url) {
    return new Promise((resolve, reject) => {
        const socket = new WebSocket(url, ['v12.stomp']);
        socket.received = [];
        socket.on('message', (data) => socket.received.push(data.toString()));
        socket.closedPromise = new Promise((done) => socket.on('close', done));
        socket.on('open', () => resolve(socket));
        socket.on('error', reject);
    });
}

//  Raw HTTP/1.1: bytes as the test means them, on a connection of their
//  own. Resolves once the server closed it (or after timeoutMs, with open
//  true) with the first answer's status (0: none), lower-case headers,
//  body (a Buffer), and everything received.
export function rawHttp (port, bytes, timeoutMs = 5000) {
    return new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        const chunks = [];
        let open = true;
        const done = () => {
            clearTimeout(timer);
            const data = Buffer.concat(chunks);
            const end = data.indexOf('\r\n\r\n');
            const head = end < 0 ? '' : data.subarray(0, end).toString('latin1');
            const headers = {};
            for (const line of head.split('\r\n').slice(1)) {
                const colon = line.indexOf(':');
                headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
            }
            const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
            const length = Number(headers['content-length'] ?? data.length);
            const body = end < 0 ? Buffer.alloc(0) : data.subarray(end + 4, end + 4 + length);
            resolve({ status, headers, body, text: body.toString('utf8'), all: data, open });
        };
        const timer = setTimeout(() => { socket.destroy(); done(); }, timeoutMs);
        socket.on('data', (data) => chunks.push(data));
        socket.on('close', () => { open = false; done(); });
        socket.on('error', () => {});
        socket.write(bytes);
    });
}

export { randomUUID };
