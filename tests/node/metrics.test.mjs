//  GET /metrics: the whole host in Prometheus text format (the figures of
//  every actor's status record, histograms for delivery latency and
//  persistence lag), checked by the Prometheus client library's parser.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Host, collect, sendWithReceipt, waitFor } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
let host;
after(async () => { await host?.down(); });

function parse (text) {
    //  Debian's python, where Debian's python3-prometheus-client lives
    const run = spawnSync('/usr/bin/python3', [join(here, '..', 'metrics-parse.py')], { input: text });
    assert.equal(run.status, 0, `the parser refused /metrics: ${run.stderr}`);
    return JSON.parse(run.stdout.toString());
}

test('/metrics shows every actor of the host, with latency histograms', async () => {
    host = await new Host({ extra: ['--janitor-interval-ms', '500'] }).up();
    const room = await host.createRoom(host.token('alice'), { kind: 'direct', members: ['bob'] });
    const alice = await host.stomp(host.token('alice'));
    const bob = await host.stomp(host.token('bob'));
    const seen = await collect(bob, room.id);
    for (let i = 0; i < 50; i++) await sendWithReceipt(alice, room.id, `m${i}`);
    await waitFor('delivery', () => seen.length === 50);

    let families;
    await waitFor('the figures of all four actors', async () => {
        const response = await fetch(`${host.base}/metrics`);
        assert.equal(response.status, 200);
        assert.match(response.headers.get('content-type'), /text\/plain/);
        families = parse(await response.text());
        const delivered = families.parley_conn_delivery_latency_ms?.samples
            .find(([name]) => name === 'parley_conn_delivery_latency_ms_count');
        const stored = families.parley_bridge_persist_lag_ms?.samples
            .find(([name]) => name === 'parley_bridge_persist_lag_ms_count');
        return delivered?.[2] >= 50 && stored?.[2] >= 50
            && families.parley_store_stored?.samples[0][2] >= 50 && families.parley_router_rooms
            && families.parley_bridge_groups_pending;
    }, 15000);
    assert.equal(families.parley_conn_delivery_latency_ms.type, 'histogram');
    assert.equal(families.parley_bridge_persist_lag_ms.type, 'histogram');
    assert.equal(families.parley_conn_sessions.type, 'gauge');
    const [, labels] = families.parley_conn_sessions.samples[0];
    assert.deepEqual(labels, { host: 'h1', instance: '0' });
    assert.ok(families.parley_bridge_appended.samples[0][2] >= 50);
    assert.ok(families.parley_store_stored.samples[0][2] >= 50);
    //  Per consumer group: what is delivered and not acked, what is not read yet
    const groups = families.parley_bridge_groups_pending.samples.map(([, labels]) => labels.name).sort();
    assert.deepEqual(groups, ['fanout:h1', 'persist']);
    assert.ok(families.parley_bridge_groups_lag);
    assert.equal((await fetch(`${host.base}/healthz`)).status, 200);
    assert.equal((await fetch(`${host.base}/readyz`)).status, 200);
    await alice.deactivate();
    await bob.deactivate();
});
