//  bin/parley soak: one host under steady load with connect/disconnect
//  churn for minutes; fails on resource growth or on any loss.
//
//  node soak.mjs [--minutes M] [--rate R] [--rooms N] [--churn C] [--warmup W]
//    N direct rooms, two users each. One sender per room sends with
//    receipts, R messages a second in all (default 2,000: half of what
//    `bin/parley bench` stores on a 2-core machine with FerretDB; a higher
//    rate outruns the store and only measures its backlog). A steady receiver per
//    room must see every receipted seq once, in order. Every second C
//    clients connect, resume a room with since-seq (must get a gapless run
//    from there), and leave a few seconds later. Each minute prints the
//    resident memory and open descriptors of every actor. After the run:
//    every receipted message in MongoDB, nothing lost or duplicated, and no
//    actor grew past 10% of its size at the end of the warm-up (W minutes).
import { readFileSync, readdirSync } from 'node:fs';
import { Host, collect, sendWithReceipt, sleep, waitFor, withMongo, randomUUID } from './harness.mjs';

const options = { minutes: 30, rate: 2000, rooms: 40, churn: 5, warmup: 2 };
for (let i = 2; i < process.argv.length; i += 2) {
    const name = process.argv[i].replace(/^--/, '');
    if (!(name in options) || Number.isNaN(Number(process.argv[i + 1])))
        throw new Error(`unknown option or value: ${process.argv[i]} ${process.argv[i + 1]}`);
    options[name] = Number(process.argv[i + 1]);
}
const GROWTH_LIMIT = 1.10;

//  Problems are also said as they happen (the first few), so a stalled run
//  shows its cause before it ends
class Problems extends Array {
    push (...items) {
        for (const item of items)
            if (this.length < 5) console.log(`problem: ${item}`);
        return super.push(...items);
    }
}

function rssKiB (pid) {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}
function openFds (pid) {
    return readdirSync(`/proc/${pid}/fd`).length;
}

//  A room: sender, steady receiver, what was receipted and what arrived
async function openRoom (host, index) {
    const a = host.token(`sa${index}`, `Sender ${index}`);
    const b = host.token(`sb${index}`, `Reader ${index}`);
    const room = await host.createRoom(a, { kind: 'direct', members: [`sb${index}`] });
    const sender = await host.stomp(a);
    const receiver = await host.stomp(b);
    const entry = { index, room, sender, receiver, tokens: [a, b], receipted: 0, lastSeen: 0, problems: [] };
    receiver.subscribe(`/topic/rooms/${room.id}`, (message) => {
        const seq = Number(JSON.parse(message.body).seq);
        if (seq !== entry.lastSeen + 1)
            entry.problems.push(`room ${index}: seq ${seq} after ${entry.lastSeen}`);
        entry.lastSeen = Math.max(entry.lastSeen, seq);
    });
    return entry;
}

//  Send at a steady rate until the deadline, each room in turn
async function sendLoad (rooms, deadline, problems) {
    const perTick = Math.max(1, Math.round(options.rate / 100));
    let turn = 0;
    const inFlight = new Set();
    while (Date.now() < deadline) {
        const tickStart = Date.now();
        for (let k = 0; k < perTick; k++) {
            const r = rooms[turn++ % rooms.length];
            const promise = sendWithReceipt(r.sender, r.room.id, `soak ${randomUUID()}`)
                .then((seq) => { r.receipted = Math.max(r.receipted, seq); })
                .catch((error) => problems.push(`send in room ${r.index}: ${error.message}`))
                .finally(() => inFlight.delete(promise));
            inFlight.add(promise);
        }
        //  The client is the limit when it cannot keep up: do not pile up
        while (inFlight.size > options.rate)
            await Promise.race(inFlight);
        await sleep(Math.max(0, 10 - (Date.now() - tickStart)));
    }
    await Promise.all(inFlight);
}

//  Churn: clients that come, resume a room from some seq, and go
async function churn (host, rooms, deadline, problems, counts) {
    const live = new Set();
    while (Date.now() < deadline) {
        for (let k = 0; k < options.churn; k++) {
            const r = rooms[Math.floor(Math.random() * rooms.length)];
            const since = Math.max(0, r.lastSeen - 50);
            const visit = (async () => {
                const client = await host.stomp(r.tokens[1]);
                const seen = await collect(client, r.room.id, { 'since-seq': String(since) });
                await sleep(2000 + Math.random() * 2000);
                const seqs = seen.map((m) => Number(m.body.seq));
                for (let i = 0; i < seqs.length; i++)
                    if (seqs[i] !== since + 1 + i) {
                        problems.push(`resume in room ${r.index} from ${since}: seq ${seqs[i]} at ${i}`);
                        break;
                    }
                await client.deactivate();
                counts.visits++;
            })().catch((error) => problems.push(`churn: ${error.message}`));
            live.add(visit);
            visit.finally(() => live.delete(visit));
        }
        await sleep(1000);
    }
    await Promise.all(live);
}

function sample (host) {
    const figures = {};
    for (const name of host.processes.keys()) {
        const pid = host.pid(name);
        figures[name] = { rss: rssKiB(pid), fds: openFds(pid) };
    }
    return figures;
}

const host = await new Host({}).up();
let failed = false;
try {
    const rooms = [];
    for (let i = 0; i < options.rooms; i++) rooms.push(await openRoom(host, i));
    const problems = new Problems();
    const counts = { visits: 0 };
    const started = Date.now();
    const deadline = started + options.minutes * 60000;
    const load = Promise.all([sendLoad(rooms, deadline, problems), churn(host, rooms, deadline, problems, counts)]);
    let baseline = null;
    let latest = null;
    for (let minute = 1; Date.now() < deadline; minute++) {
        await sleep(Math.max(0, Math.min(started + minute * 60000, deadline) - Date.now()));
        latest = sample(host);
        const sent = rooms.reduce((sum, r) => sum + r.receipted, 0);
        console.log(`minute ${minute}: ${sent} receipted, ${counts.visits} resumes, ` +
            Object.entries(latest).map(([name, f]) => `${name} ${(f.rss / 1024).toFixed(1)} MiB ${f.fds} fds`).join(', '));
        if (!baseline && minute >= options.warmup) baseline = latest;
    }
    await load;
    const total = rooms.reduce((sum, r) => sum + r.receipted, 0);
    await waitFor('every receipted message delivered', () => rooms.every((r) => r.lastSeen >= r.receipted), 60000)
        .catch(() => problems.push('not every receipted message reached its steady receiver'));
    //  The store may lag behind the load: it has time to catch up
    const storedNow = () => withMongo(host.database, (db) => db.collection('messages').countDocuments({}));
    const storing = Date.now();
    await waitFor('every receipted message in MongoDB', async () => await storedNow() >= total, 600000)
        .catch(() => {});
    const stored = await storedNow();
    console.log(`in MongoDB ${((Date.now() - storing) / 1000).toFixed(1)} s after the load ended`);
    if (stored !== total) problems.push(`${total} receipted but ${stored} in MongoDB`);
    for (const r of rooms) problems.push(...r.problems);
    if (baseline && latest)
        for (const [name, f] of Object.entries(latest)) {
            const base = baseline[name];
            if (f.rss > base.rss * GROWTH_LIMIT)
                problems.push(`${name} grew from ${base.rss} KiB to ${f.rss} KiB after the warm-up`);
            if (f.fds > Math.ceil(base.fds * GROWTH_LIMIT))
                problems.push(`${name} holds ${f.fds} descriptors, ${base.fds} after the warm-up`);
        }
    console.log(`soak: ${options.minutes} min, ${total} messages (${(total / (options.minutes * 60)).toFixed(0)}/s), ` +
        `${counts.visits} resumes, ${stored} in MongoDB`);
    if (problems.length) {
        failed = true;
        console.log(`FAILED: ${problems.length} problems\n  ` + problems.slice(0, 20).join('\n  '));
        for (const name of host.processes.keys())
            console.log(`--- ${name}, last lines:\n${host.log(name).split('\n').slice(-12).join('\n')}`);
    }
    else
        console.log('passed: nothing lost, nothing duplicated, no growth after the warm-up');
    await Promise.all(rooms.flatMap((r) => [r.sender.deactivate(), r.receiver.deactivate()]));
} finally {
    await host.down();
}
process.exit(failed ? 1 : 0);
