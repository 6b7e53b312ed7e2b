//  bin/parley bench: throughput, latency and memory of one host, measured
//  with real @stomp/stompjs clients against the real actor processes.
//
//  node bench.mjs [--rooms R] [--messages N] [--window W] [--conn C] [--store S]
//    R direct rooms, two users each (both subscribed); N messages in all,
//    sent with receipts, at most W unconfirmed per room. Prints messages per
//    second (receipted and delivered), latency from SEND to MESSAGE at the
//    other member (p50, p99, max), time until all are in MongoDB, and the
//    resident memory of every actor process.
import { readFileSync } from 'node:fs';
import { Host, collect, sendWithReceipt, waitFor, withMongo } from './harness.mjs';

const options = { rooms: 20, messages: 20000, window: 50, conn: 1, store: 1 };
for (let i = 2; i < process.argv.length; i += 2) {
    const name = process.argv[i].replace(/^--/, '');
    if (!(name in options)) throw new Error(`unknown option ${process.argv[i]}`);
    options[name] = Number(process.argv[i + 1]);
}

function rssKiB (pid) {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

//  CPU seconds (user + system) a process has used so far
function cpuSeconds (pid) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
}

function percentile (sorted, p) {
    return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

const host = await new Host({ conn: options.conn, store: options.store }).up();
try {
    const pairs = [];
    for (let r = 0; r < options.rooms; r++) {
        const a = host.token(`a${r}`, `A${r}`);
        const b = host.token(`b${r}`, `B${r}`);
        const room = await host.createRoom(a, { kind: 'direct', members: [`b${r}`] });
        const sender = await host.stomp(a);
        const receiver = await host.stomp(b);
        await collect(sender, room.id);
        const seen = await collect(receiver, room.id);
        pairs.push({ room, sender, receiver, seen });
    }
    const perRoom = Math.floor(options.messages / options.rooms);
    const total = perRoom * options.rooms;
    const sentAt = new Map();
    const latencies = [];
    for (const pair of pairs) {
        pair.receiver.unsubscribe(pair.seen.subscription.id);
        pair.receiver.subscribe(`/topic/rooms/${pair.room.id}`, (message) => {
            const body = JSON.parse(message.body);
            const started = sentAt.get(body.clientMsgId);
            if (started !== undefined) latencies.push(performance.now() - started);
        });
    }
    const rssBefore = Object.fromEntries([...host.processes.keys()].map((name) => [name, rssKiB(host.pid(name))]));
    const cpuBefore = Object.fromEntries([...host.processes.keys()].map((name) => [name, cpuSeconds(host.pid(name))]));
    const clientCpuBefore = process.cpuUsage();
    const started = performance.now();
    await Promise.all(pairs.map(async (pair, r) => {
        let next = 0;
        const inFlight = new Set();
        while (next < perRoom) {
            while (inFlight.size < options.window && next < perRoom) {
                const id = `m-${r}-${next++}`;
                sentAt.set(id, performance.now());
                const promise = sendWithReceipt(pair.sender, pair.room.id, `benchmark message ${id}`, id)
                    .then(() => inFlight.delete(promise));
                inFlight.add(promise);
            }
            await Promise.race(inFlight);
        }
        await Promise.all(inFlight);
    }));
    const receipted = performance.now();
    await waitFor('every delivery', () => latencies.length >= total, 120000);
    const delivered = performance.now();
    await waitFor('everything in MongoDB', () => withMongo(host.database,
        async (db) => (await db.collection('messages').countDocuments({})) >= total), 300000);
    const stored = performance.now();
    const cpu = Object.fromEntries([...host.processes.keys()].map((name) => [name, cpuSeconds(host.pid(name)) - cpuBefore[name]]));
    const clientCpu = process.cpuUsage(clientCpuBefore);
    latencies.sort((a, b) => a - b);
    const seconds = (to) => (to - started) / 1000;
    console.log(`parley bench: ${options.rooms} rooms, ${total} messages, window ${options.window}, ` +
        `${options.conn} connection / ${options.store} persistence actors`);
    console.log(`  receipted:  ${(total / seconds(receipted)).toFixed(0)} msg/s (${seconds(receipted).toFixed(2)} s)`);
    console.log(`  delivered:  ${(total / seconds(delivered)).toFixed(0)} msg/s`);
    console.log(`  stored:     ${(total / seconds(stored)).toFixed(0)} msg/s (all in MongoDB after ${seconds(stored).toFixed(2)} s)`);
    console.log(`  latency SEND -> MESSAGE: p50 ${percentile(latencies, 0.5).toFixed(1)} ms, ` +
        `p99 ${percentile(latencies, 0.99).toFixed(1)} ms, max ${latencies[latencies.length - 1].toFixed(1)} ms`);
    for (const name of host.processes.keys())
        console.log(`  ${name.padEnd(8)} rss ${(rssBefore[name] / 1024).toFixed(1)} MiB before, ` +
            `${(rssKiB(host.pid(name)) / 1024).toFixed(1)} MiB after; cpu ${cpu[name].toFixed(2)} s ` +
            `(${(cpu[name] * 1e6 / total).toFixed(1)} us/msg)`);
    console.log(`  clients  cpu ${((clientCpu.user + clientCpu.system) / 1e6).toFixed(2)} s (node, @stomp/stompjs, same machine)`);
    await Promise.all(pairs.flatMap((pair) => [pair.sender.deactivate(), pair.receiver.deactivate()]));
} finally {
    await host.down();
}
