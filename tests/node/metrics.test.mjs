//  GET /metrics: the whole host in Prometheus text format (the figures of
//  every actor's status record, histograms for delivery latency and
//  persistence lag, in seconds), checked by the Prometheus client library's
//  parser and by `promtool check metrics`, which must have nothing to say.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Host, collect, sendWithReceipt, waitFor } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
let host;
after(async () => { await host?.down(); });

//  Families by the client library's names: a counter's without `_total`,
//  its samples with it
function parse (text) {
    //  Debian's python, where Debian's python3-prometheus-client lives
    const run = spawnSync('/usr/bin/python3', [join(here, '..', 'metrics-parse.py')], { input: text });
    assert.equal(run.status, 0, `the parser refused /metrics: ${run.stderr}`);
    return JSON.parse(run.stdout.toString());
}

const value = (family, sample) => family?.samples.find(([name]) => name === sample)?.[2];

test('/metrics shows every actor of the host, with latency histograms', async () => {
    host = await new Host({ extra: ['--janitor-interval-ms', '500'] }).up();
    const room = await host.createRoom(host.token('alice'), { kind: 'direct', members: ['bob'] });
    const alice = await host.stomp(host.token('alice'));
    const bob = await host.stomp(host.token('bob'));
    const seen = await collect(bob, room.id);
    for (let i = 0; i < 50; i++) await sendWithReceipt(alice, room.id, `m${i}`);
    await waitFor('delivery', () => seen.length === 50);

    let text, families;
    await waitFor('the figures of all four actors', async () => {
        const response = await fetch(`${host.base}/metrics`);
        assert.equal(response.status, 200);
        assert.match(response.headers.get('content-type'), /text\/plain/);
        text = await response.text();
        families = parse(text);
        return value(families.parley_conn_delivery_latency_seconds, 'parley_conn_delivery_latency_seconds_count') >= 50
            && value(families.parley_bridge_persist_lag_seconds, 'parley_bridge_persist_lag_seconds_count') >= 50
            && value(families.parley_store_stored, 'parley_store_stored_total') >= 50
            && families.parley_router_rooms && families.parley_bridge_groups_pending;
    }, 15000);

    //  Prometheus' own linter: no errors, no warnings
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text });
    assert.equal(lint.error, undefined, `promtool did not run (Debian package prometheus): ${lint.error}`);
    const said = `${lint.stdout}${lint.stderr}`.trim();
    assert.equal(lint.status, 0, `promtool check metrics failed:\n${said}`);
    assert.equal(said, '', `promtool check metrics warned:\n${said}`);
    //  Every family has its own help text
    const helps = text.split('\n').filter((line) => line.startsWith('# HELP '))
        .map((line) => line.replace(/^# HELP \S+ /, ''));
    assert.equal(new Set(helps).size, helps.length, `a HELP text is shared:\n${helps.join('\n')}`);
    //  Every figure of every actor's record is exported: none left out
    const skipped = families.parley_metrics_figures_skipped.samples;
    assert.deepEqual(skipped.map(([, labels]) => labels.kind).sort(), ['bridge', 'conn', 'router', 'store']);
    for (const [, labels, count] of skipped) assert.equal(count, 0, `figures of ${labels.kind} left out`);

    assert.equal(families.parley_conn_delivery_latency_seconds.type, 'histogram');
    assert.equal(families.parley_bridge_persist_lag_seconds.type, 'histogram');
    //  Bounds in seconds: pl_histogram's 1 ms .. 10 s
    const bounds = families.parley_conn_delivery_latency_seconds.samples
        .filter(([name]) => name.endsWith('_bucket')).map(([, labels]) => labels.le);
    assert.equal(bounds[0], '0.001');
    assert.deepEqual(bounds.slice(-2), ['10', '+Inf']);
    assert.equal(families.parley_conn_sessions.type, 'gauge');
    const [, labels] = families.parley_conn_sessions.samples[0];
    assert.deepEqual(labels, { host: 'h1', instance: '0' });
    assert.equal(families.parley_conn_sessions_opened.type, 'counter');
    assert.ok(value(families.parley_conn_sessions_opened, 'parley_conn_sessions_opened_total') >= 2);
    assert.equal(families.parley_conn_sends.type, 'counter');
    assert.ok(value(families.parley_conn_sends, 'parley_conn_sends_total') >= 50);
    assert.equal(families.parley_bridge_appended.type, 'counter');
    assert.ok(value(families.parley_bridge_appended, 'parley_bridge_appended_total') >= 50);
    assert.equal(families.parley_store_stored.type, 'counter');
    assert.equal(families.parley_router_bridge_ready.type, 'gauge');
    //  Per consumer group: what is delivered and not acked, what is not read yet
    const groups = families.parley_bridge_groups_pending.samples.map(([, labels]) => labels.name).sort();
    assert.deepEqual(groups, ['fanout:h1', 'persist']);
    assert.equal(families.parley_bridge_groups_lag.type, 'gauge');
    assert.equal((await fetch(`${host.base}/healthz`)).status, 200);
    assert.equal((await fetch(`${host.base}/readyz`)).status, 200);
    await alice.deactivate();
    await bob.deactivate();
});
