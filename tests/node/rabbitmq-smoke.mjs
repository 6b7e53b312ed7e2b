//  Smoke test of the RabbitMQ Web-STOMP broker the benchmark compares parley
//  with (tests/rabbitmq.sh start DIR), through the same client the benchmark
//  uses: two @stomp/stompjs clients over ws with subprotocol v12.stomp both
//  SUBSCRIBE /topic/load.0, one SENDs 100 messages with receipts, and both
//  must receive all 100 in order. Then a rough throughput figure, for the
//  record only: one publisher, one subscriber, one topic.
//      cd tests/node && node rabbitmq-smoke.mjs [ws://127.0.0.1:P/ws]
//  (URL from the argument or RABBITMQ_WS_URL, as in DIR/rabbitmq.env)
//  Not a *.test.mjs: it needs a broker that the suite does not start.
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const url = process.argv[2] ?? process.env.RABBITMQ_WS_URL;
if (!url) {
    console.error('usage: node rabbitmq-smoke.mjs ws://127.0.0.1:PORT/ws (or RABBITMQ_WS_URL)');
    process.exit(2);
}
const count = 100;
const throughputMessages = Number(process.env.SMOKE_MESSAGES ?? 20000);

//  A connected client, as the parley harness makes them (heart-beats off:
//  the benchmark's clients negotiate 0,0 too), logging in as guest, which
//  RabbitMQ admits only over loopback
async function connect (name) {
    const client = new Client({
        webSocketFactory: () => new WebSocket(url, ['v12.stomp']),
        connectHeaders: { login: 'guest', passcode: 'guest', host: '/' },
        reconnectDelay: 0,
        heartbeatIncoming: 0,
        heartbeatOutgoing: 0,
        debug: () => {},
    });
    await new Promise((resolve, reject) => {
        client.onConnect = (frame) => { client.connectedFrame = frame; resolve(); };
        client.onStompError = (frame) => reject(new Error(`${name}: ERROR ${frame.headers.message}`));
        client.onWebSocketClose = () => reject(new Error(`${name}: closed before CONNECTED`));
        client.activate();
    });
    client.onStompError = (frame) => { throw new Error(`${name}: ERROR ${frame.headers.message} ${frame.body}`); };
    client.onWebSocketClose = () => { client.closed = true; };
    return client;
}

function receipt (client, id, ms = 10000) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no RECEIPT ${id}`)), ms);
        client.watchForReceipt(id, (frame) => { clearTimeout(timer); resolve(frame); });
    });
}

//  SUBSCRIBE with a receipt: RabbitMQ sends it once the subscription's
//  queue exists and is bound to amq.topic, so nothing sent afterwards can
//  be missed
async function subscribe (client, destination, onMessage) {
    const id = `sub-${Math.random().toString(36).slice(2)}`;
    const done = receipt(client, id);
    client.subscribe(destination, onMessage, { receipt: id });
    await done;
}

function waitFor (predicate, ms, what) {
    return new Promise((resolve, reject) => {
        const deadline = Date.now() + ms;
        const poll = () => {
            if (predicate()) return resolve();
            if (Date.now() > deadline) return reject(new Error(`timed out: ${what}`));
            setTimeout(poll, 5);
        };
        poll();
    });
}

const failures = [];
let passed = 0;
const check = (ok, what) => { console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`); if (ok) passed++; else failures.push(what); };

const a = await connect('a');
const b = await connect('b');
const h = a.connectedFrame.headers;
console.log(`connected: server ${h.server}, STOMP ${h.version}, heart-beat ${h['heart-beat']}, session ${h.session}`);
check(h.version === '1.2', 'STOMP 1.2 negotiated over v12.stomp');

//  1. Both subscribe /topic/load.0, a sends 100 with receipts, both get all
const got = { a: [], b: [] };
await subscribe(a, '/topic/load.0', (m) => got.a.push(m));
await subscribe(b, '/topic/load.0', (m) => got.b.push(m));
const receipts = [];
for (let i = 0; i < count; i++) {
    const id = `send-${i}`;
    receipts.push(receipt(a, id));
    a.publish({ destination: '/topic/load.0', body: JSON.stringify({ i }), headers: { receipt: id, 'content-type': 'application/json' } });
}
await Promise.all(receipts);
check(true, `${count} RECEIPTs for ${count} SENDs`);
await waitFor(() => got.a.length >= count && got.b.length >= count, 10000, 'deliveries').catch(() => {});
for (const name of ['a', 'b']) {
    const order = got[name].map((m) => JSON.parse(m.body).i);
    check(order.length === count && order.every((v, i) => v === i), `${name} received ${order.length}/${count} in order`);
}
const sample = got.b[0].headers;
console.log(`delivered headers: ${Object.keys(sample).sort().join(', ')} (destination ${sample.destination})`);

//  2. Rough throughput (for the report, not a benchmark): a publishes as
//  fast as the socket takes it to /topic/load.1, b counts deliveries; then
//  the same with a RECEIPT on every SEND, 100 outstanding at a time
let delivered = 0;
await subscribe(b, '/topic/load.1', () => { delivered++; });
const body = JSON.stringify({ content: 'x'.repeat(100) });
let started = performance.now();
for (let i = 0; i < throughputMessages; i++) a.publish({ destination: '/topic/load.1', body });
await waitFor(() => delivered >= throughputMessages, 60000, 'throughput deliveries');
let seconds = (performance.now() - started) / 1000;
console.log(`throughput: ${throughputMessages} messages a -> b in ${seconds.toFixed(2)} s = ${Math.round(throughputMessages / seconds)} msg/s (no receipts)`);

delivered = 0;
started = performance.now();
const window = [];
for (let i = 0; i < throughputMessages; i++) {
    const id = `t-${i}`;
    window.push(receipt(a, id, 30000));
    a.publish({ destination: '/topic/load.1', body, headers: { receipt: id } });
    if (window.length >= 100) await window.shift();
}
await Promise.all(window);
await waitFor(() => delivered >= throughputMessages, 60000, 'throughput deliveries with receipts');
seconds = (performance.now() - started) / 1000;
console.log(`throughput: ${throughputMessages} messages a -> b in ${seconds.toFixed(2)} s = ${Math.round(throughputMessages / seconds)} msg/s (RECEIPT on each, 100 in flight)`);

await a.deactivate();
await b.deactivate();
console.log(`${failures.length ? 'FAILED' : 'passed'}: ${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
