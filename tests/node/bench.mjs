//  bin/parley bench: one load, the same client and parameters, against
//  parley and (or) RabbitMQ's Web-STOMP on this machine; one table.
//
//  node bench.mjs [--conns N] [--room R] [--msgs M] [--rate PER_CONN]
//                 [--hosts H] [--target parley|rabbitmq|both] [--json FILE]
//                 [--sweep] [--seconds S] [--threads T] [--conn C] [--store S]
//                 [--plot FILE.png] [--store-raw] [--idle] [--replicas K]
//    N connections in rooms of R (every member, the sender too, gets every
//    message), each sending M messages at PER_CONN a second, from the C
//    load client (tests/load, T threads). --sweep raises the offered rate
//    step by step (S seconds a step) until p99 passes 50 ms or a message
//    is lost, and reports the highest delivered rate that held.
//  Prints: connect+subscribe time, offered and delivered rates, latency
//  SEND -> MESSAGE (p50, p99, p99.9, max), lost and duplicated, CPU
//  seconds, CPU per message and peak memory of every server process (each
//  actor, Redis, the store; RabbitMQ) and of the client, and for parley the
//  persistence lag (last send until every message is in MongoDB) and the
//  rate of the persistence path (messages / (sending + lag)). --store-raw
//  then inserts as many message documents into the same store with a bare
//  mongo-c-driver bulk-insert loop (tests/storeraw, batches of 512, the
//  store-batch default): the store's own ceiling, beside the path's rate.
//  --replicas K starts K Redis replicas of the test Redis and runs parley
//  with redis-min-replicas K: every RECEIPT waits for WAIT K.
//  --idle measures parley at rest instead: CPU of every actor, Redis and
//  the store over S seconds with no clients, then again with N sessions
//  (@stomp/stompjs, heart-beats 10 s both ways, as its default) subscribed
//  to rooms of R and silent; and the commands parley sends Redis a second;
//  and the actors' memory at the end of each: resident, anonymous (no
//  pages of shared code) and, with sessions, what each session added.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, connectStomp, freePort, replicaLinked, sleep, startRedis, waitFor, withMongo } from './harness.mjs';
import { Meter, anonKiB, rssKiB, tree } from './bench-procs.mjs';

const options = { conns: 1000, room: 2, msgs: 20, rate: 4, hosts: 1, target: 'parley', json: '', sweep: false,
    seconds: 10, threads: 2, conn: 1, store: 1, plot: '', 'store-raw': false, idle: false, replicas: 0 };
for (let i = 2; i < process.argv.length; i++) {
    const name = process.argv[i].replace(/^--/, '');
    if (!(name in options)) throw new Error(`unknown option ${process.argv[i]}`);
    if (typeof options[name] === 'boolean') options[name] = true;
    else options[name] = typeof options[name] === 'number' ? Number(process.argv[++i]) : process.argv[++i];
}
if (!['parley', 'rabbitmq', 'both'].includes(options.target)) throw new Error('--target parley, rabbitmq or both');
if (options.conns % options.room) throw new Error('--conns must be a multiple of --room');
const targets = options.target === 'both' ? ['parley', 'rabbitmq'] : [options.target];
const top = new URL('../..', import.meta.url).pathname;
const build = process.env.PARLEY_BUILD_DIR;
const servers = process.env.PARLEY_SERVERS_DIR;
const P99_LIMIT_MS = 50;

//  The load client: its JSON, whatever its exit status says of losses
function load (args) {
    return new Promise((resolve, reject) => {
        const child = spawn(join(build, 'parley-load'), args, { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (data) => { out += data; });
        child.on('exit', (code) => {
            try { resolve(JSON.parse(out)); } catch { reject(new Error(`parley-load exited ${code}: ${out}`)); }
        });
    });
}

const loadArgs = (rate, msgs) => ['--conns', String(options.conns), '--room', String(options.room),
    '--msgs', String(msgs), '--rate', String(rate), '--threads', String(options.threads)];

//  Group rooms of R members each: connection i is user load-<i>
async function createRooms (host) {
    const ids = [];
    const count = options.conns / options.room;
    for (let first = 0; first < count; first += 20) {
        const batch = [];
        for (let k = first; k < Math.min(count, first + 20); k++) {
            const members = Array.from({ length: options.room }, (_, j) => `load-${k * options.room + j}`);
            batch.push(host.createRoom(host.token(members[0]), { kind: 'group', name: `load ${k}`, members: members.slice(1) }));
        }
        ids.push(...(await Promise.all(batch)).map((room) => room.id));
    }
    return ids;
}

const serverPid = (name) => Number(readFileSync(join(servers, `${name}.pid`), 'utf8'));

//  Until every message is in MongoDB: when that was (ms, performance.now)
async function storedAt (host, total, deadline) {
    return withMongo(host.database, async (db) => {
        while (performance.now() < deadline) {
            if (await db.collection('messages').estimatedDocumentCount() >= total) return performance.now();
            await sleep(200);
        }
        return null;
    });
}

//  --replicas K: K redis-server replicas of the test Redis on loopback,
//  each in a folder of its own, linked before this returns
async function startReplicas (count) {
    const primary = new URL(process.env.PARLEY_TEST_REDIS_URL);
    const replicas = [];
    for (let k = 0; k < count; k++) {
        const port = await freePort();
        const dir = mkdtempSync(join(tmpdir(), 'parley-bench-replica-'));
        const child = await startRedis(port, dir, '--replicaof', primary.hostname, primary.port);
        replicas.push({ port, dir, child });
        await waitFor(`replica ${port} linked`, () => replicaLinked(port));
    }
    return replicas;
}

function stopReplicas (replicas) {
    for (const { child, dir } of replicas) {
        child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
    }
}

async function runParley (rate, msgs) {
    const replicas = await startReplicas(options.replicas);
    //  Every actor reads it; only the bridge uses it
    if (options.replicas) process.env.PARLEY_REDIS_MIN_REPLICAS = String(options.replicas);
    const hosts = [await new Host({ conn: options.conn, store: options.store }).up()];
    try {
        for (let h = 1; h < options.hosts; h++)
            hosts.push(await hosts[0].sibling(`h${h + 1}`, { conn: options.conn, store: options.store }));
        const folder = mkdtempSync(join(tmpdir(), 'parley-bench-'));
        const roomsFile = join(folder, 'rooms');
        writeFileSync(roomsFile, (await createRooms(hosts[0])).join('\n') + '\n');
        const groups = { redis: tree(serverPid('redis')), store: tree(serverPid('ferretdb')) };
        if (replicas.length) groups['redis replicas'] = replicas.map(({ child }) => child.pid);
        for (const host of hosts)
            for (const name of host.processes.keys()) groups[`${host.hostId} ${name}`] = [host.pid(name)];
        const meter = new Meter(groups);
        const started = performance.now();
        const result = await load([...loadArgs(rate, msgs), '--target', 'parley', '--secret', hosts[0].secret,
            '--rooms', roomsFile, '--url', hosts.map((host) => host.url).join(',')]);
        const lastSend = started + (result.connect_s + result.send_s) * 1000;
        const stored = await storedAt(hosts[0], result.receipted, performance.now() + 120000);
        result.processes = meter.read();
        result.persist_lag_s = stored === null ? null : Math.max(0, (stored - lastSend) / 1000);
        if (stored !== null) result.persist_per_s = result.receipted / (result.send_s + result.persist_lag_s);
        if (options['store-raw']) result.store_raw = storeRaw(result.receipted);
        rmSync(folder, { recursive: true, force: true });
        return result;
    } finally {
        for (const host of hosts) await host.down();
        stopReplicas(replicas);
    }
}

//  The store's ceiling: as many documents in bulk inserts of 512, no parley
function storeRaw (docs) {
    const out = execFileSync(join(build, 'parley-store-raw'), ['--url', process.env.PARLEY_TEST_MONGO_URL,
        '--db', 'parley_store_raw', '--docs', String(Math.max(docs, 512)), '--batch', '512'],
        { stdio: ['ignore', 'pipe', 'inherit'] });
    return JSON.parse(out);
}

async function runRabbitmq (rate, msgs) {
    const folder = mkdtempSync(join(tmpdir(), 'parley-bench-rabbitmq-'));
    execFileSync(join(top, 'tests/rabbitmq.sh'), ['start', folder], { stdio: ['ignore', 'ignore', 'inherit'] });
    try {
        const env = Object.fromEntries(readFileSync(join(folder, 'rabbitmq.env'), 'utf8').trim().split('\n')
            .map((line) => line.split('=')).map(([key, ...value]) => [key, value.join('=')]));
        const meter = new Meter({ rabbitmq: tree(Number(env.RABBITMQ_PID)) });
        const result = await load([...loadArgs(rate, msgs), '--target', 'rabbitmq', '--url', env.RABBITMQ_WS_URL]);
        result.processes = meter.read();
        return result;
    } finally {
        execFileSync(join(top, 'tests/rabbitmq.sh'), ['stop', folder], { stdio: ['ignore', 'ignore', 'inherit'] });
        rmSync(folder, { recursive: true, force: true });
    }
}

//  --------------------------------------------------------------------------
//  At rest

//  Redis's total_commands_processed, our INFO included
function redisCommands () {
    const info = execFileSync('redis-cli', ['-u', process.env.PARLEY_TEST_REDIS_URL, 'info', 'stats'], { encoding: 'utf8' });
    return Number(/total_commands_processed:(\d+)/.exec(info)[1]);
}

//  CPU % of a core of each group, Redis commands a second (less our two
//  INFOs), over seconds; and the actors' resident memory at the end
async function atRest (groups, seconds) {
    const meter = new Meter(groups);
    const commands = redisCommands();
    await sleep(seconds * 1000);
    const used = meter.read();
    const row = Object.fromEntries(Object.entries(used).map(([name, figures]) => [name, 100 * figures.cpu_s / seconds]));
    row['redis commands/s'] = (redisCommands() - commands - 2) / seconds;
    const actors = Object.keys(groups).filter((name) => name !== 'redis' && name !== 'store');
    for (const name of actors) row[`${name} resident KiB`] = rssKiB(groups[name]);
    for (const name of actors) row[`${name} anonymous KiB`] = anonKiB(groups[name]);
    row['actors resident KiB'] = actors.reduce((sum, name) => sum + row[`${name} resident KiB`], 0);
    row['actors anonymous KiB'] = actors.reduce((sum, name) => sum + row[`${name} anonymous KiB`], 0);
    return row;
}

//  A silent subscribed session with @stomp/stompjs's default heart-beats.
//  Rejects on an ERROR or a close before the SUBSCRIBE's receipt.
async function idleSessionOnce (host, user, roomId) {
    const client = await connectStomp(host.url, host.token(user), {}, 10000);
    return new Promise((resolve, reject) => {
        const fail = (why) => { client.forceDisconnect(); reject(new Error(`${user}: ${why}`)); };
        client.onStompError = (frame) => fail(frame.headers.message);
        client.onWebSocketClose = () => fail('closed');
        const receipt = `idle-${user}`;
        client.watchForReceipt(receipt, () => {
            client.onStompError = () => {};
            client.onWebSocketClose = () => {};
            resolve(client);
        });
        client.subscribe(`/topic/rooms/${roomId}`, () => {}, { receipt });
    });
}

//  Three tries: a busy store may answer a SUBSCRIBE 503 (try again)
async function idleSession (host, user, roomId) {
    for (let attempt = 1; ; attempt++) {
        try {
            return await idleSessionOnce(host, user, roomId);
        } catch (error) {
            if (attempt === 3) throw error;
            console.error(`parley bench: ${error.message}; again`);
            await sleep(1000);
        }
    }
}

async function runIdle () {
    const host = await new Host({ conn: options.conn, store: options.store }).up();
    const clients = [];
    try {
        const groups = { redis: tree(serverPid('redis')), store: tree(serverPid('ferretdb')) };
        for (const name of host.processes.keys()) groups[`${host.hostId} ${name}`] = [host.pid(name)];
        const results = { 'no clients': await atRest(groups, options.seconds) };
        const rooms = await createRooms(host);
        for (let k = 0; k < rooms.length; k++)
            for (let j = 0; j < options.room; j++)
                clients.push(idleSession(host, `load-${k * options.room + j}`, rooms[k]));
        await Promise.all(clients);
        await sleep(2000);
        const busy = await atRest(groups, options.seconds);
        const quiet = results['no clients'];
        for (const figure of ['resident', 'anonymous'])
            busy[`actors ${figure} KiB a session`] = (busy[`actors ${figure} KiB`] - quiet[`actors ${figure} KiB`]) / options.conns;
        results[`${options.conns} idle sessions`] = busy;
        return results;
    } finally {
        for (const client of await Promise.allSettled(clients)) client.value?.forceDisconnect();
        await host.down();
    }
}

const run = (target, rate, msgs) => (target === 'parley' ? runParley : runRabbitmq)(rate, msgs);
const held = (result) => result.lost === 0 && result.duplicated === 0 && result.latency_ms.p99 <= P99_LIMIT_MS;

//  --------------------------------------------------------------------------
//  The table

const fixed = (value, digits = 0) => (value === null || value === undefined ? '-' : Number(value).toFixed(digits));
const thousands = (value) => (value === null || value === undefined ? '-' : Math.round(value).toLocaleString('en-US'));

function rows (result) {
    const out = [
        ['connect+subscribe p50 / p99 ms', `${fixed(result.connect_ms.p50, 1)} / ${fixed(result.connect_ms.p99, 1)}`],
        ['all connected and subscribed s', fixed(result.connect_s, 2)],
        ['offered msg/s', thousands(result.offered_per_s)],
        ['delivered msg/s', thousands(result.delivered_per_s)],
        ['latency p50 / p99 / p99.9 / max ms', ['p50', 'p99', 'p999', 'max'].map((p) => fixed(result.latency_ms[p], 1)).join(' / ')],
        ['sent / delivered', `${thousands(result.sent)} / ${thousands(result.delivered)}`],
        ['lost / duplicated', `${result.lost} / ${result.duplicated}`],
        ['persistence lag s', fixed(result.persist_lag_s, 2)],
        ['persistence path msg/s', thousands(result.persist_per_s)],
        ['store raw bulk insert msg/s', thousands(result.store_raw?.per_s)],
        ['client cpu s (µs/msg)', `${fixed(result.client_cpu_s, 2)} (${fixed(result.client_cpu_s * 1e6 / result.sent, 1)})`],
    ];
    for (const [name, figures] of Object.entries(result.processes))
        out.push([`${name}: cpu s (µs/msg), peak MiB`,
            `${fixed(figures.cpu_s, 2)} (${fixed(figures.cpu_s * 1e6 / result.sent, 1)}), ${fixed(figures.peak_kib / 1024, 1)}`]);
    return out;
}

function table (results) {
    const names = Object.keys(results);
    const lines = new Map();
    for (const name of names)
        for (const [label, value] of rows(results[name])) {
            if (!lines.has(label)) lines.set(label, names.map(() => '-'));
            lines.get(label)[names.indexOf(name)] = value;
        }
    const width = Math.max(...[...lines.keys()].map((label) => label.length));
    console.log(`${''.padEnd(width)}  ${names.join(' | ')}`);
    for (const [label, values] of lines) console.log(`${label.padEnd(width)}  ${values.join(' | ')}`);
}

function plot (sweeps, file) {
    const data = join(tmpdir(), `parley-bench-${process.pid}.dat`);
    const blocks = Object.entries(sweeps).map(([target, steps]) => `# ${target}\n`
        + steps.map((s) => `${s.offered_per_s} ${s.delivered_per_s} ${s.latency_ms.p99}`).join('\n'));
    writeFileSync(data, blocks.join('\n\n\n') + '\n');
    const names = Object.keys(sweeps);
    const script = [
        `set terminal pngcairo size 1000,420 font ",10"`, `set output "${file}"`, 'set multiplot layout 1,2',
        'set xlabel "offered sends/s"', 'set key top left', 'set grid',
        'set ylabel "delivered msg/s"',
        `plot ${names.map((n, i) => `"${data}" index ${i} using 1:2 with linespoints title "${n}"`).join(', ')}`,
        'set ylabel "p99 latency ms"', 'set logscale y',
        `plot ${names.map((n, i) => `"${data}" index ${i} using 1:3 with linespoints title "${n}"`).join(', ')}, ${P99_LIMIT_MS} title "50 ms" dt 2`,
        'unset multiplot'];
    execFileSync('gnuplot', { input: script.join('\n') });
    rmSync(data);
}

//  --------------------------------------------------------------------------
//  The runs

const report = { machine: { cpus: cpus().length, model: cpus()[0]?.model, memory_gib: Math.round(totalmem() / 2 ** 30) },
    options, results: {}, sweeps: {} };
console.log(`parley bench: ${options.conns} connections in rooms of ${options.room}, ${report.machine.cpus} cores ` +
    `(${report.machine.model}), ` + (options.idle ? 'silent @stomp/stompjs sessions' :
    `load client tests/load/parley-load with ${options.threads} threads`));
if (options.idle) {
    report.idle = await runIdle();
    const columns = Object.keys(report.idle);
    console.log(`over ${options.seconds} s: % of one core; Redis commands a second; memory at the end`);
    console.log(`${''.padEnd(32)}  ${columns.join(' | ')}`);
    const names = new Set(columns.flatMap((column) => Object.keys(report.idle[column])));
    for (const name of names)
        console.log(`${name.padEnd(32)}  ${columns.map((c) => fixed(report.idle[c][name], 2)).join(' | ')}`);
} else
if (!options.sweep) {
    for (const target of targets) report.results[target] = await run(target, options.rate, options.msgs);
    table(report.results);
} else {
    for (const target of targets) {
        const steps = report.sweeps[target] = [];
        for (const total of [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 10000, 12000, 16000, 24000, 32000, 48000, 64000]) {
            const rate = total / options.conns;
            const step = await run(target, rate, Math.max(1, Math.round(rate * options.seconds)));
            steps.push(step);
            console.log(`${target}: offered ${thousands(step.offered_per_s)} sends/s -> delivered ` +
                `${thousands(step.delivered_per_s)} msg/s, p99 ${fixed(step.latency_ms.p99, 1)} ms, lost ${step.lost}`);
            if (!held(step)) break;
        }
        const best = steps.filter(held).at(-1);
        report.results[target] = best ?? steps[0];
        console.log(`${target}: highest delivered rate with p99 <= ${P99_LIMIT_MS} ms and nothing lost: ` +
            `${best ? thousands(best.delivered_per_s) : 'none'} msg/s`);
    }
    table(report.results);
    if (options.plot) plot(report.sweeps, options.plot);
}
if (options.json) writeFileSync(options.json, JSON.stringify(report, null, 2) + '\n');
const failed = Object.values(report.results).some((result) => result.lost || result.duplicated);
process.exit(failed ? 1 : 0);
