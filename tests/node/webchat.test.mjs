//  The web chat in a real browser (Chromium through playwright-core)
//  against the real actor processes: two hosts of one service, alice on
//  one and bob on the other, signing in by name (dev mode), chatting,
//  seeing each other type and read, surviving a reload and a kill -9 of
//  bob's connection actor. Then a sign-in link on a host without dev mode.
//  Every step leaves a screenshot in BUILD/artifacts/webchat/.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { Host, sanitized, sendWithReceipt } from './harness.mjs';

const shots = join(process.env.PARLEY_BUILD_DIR, 'artifacts', 'webchat');
rmSync(shots, { recursive: true, force: true });
mkdirSync(shots, { recursive: true });
//  Actors under ASan start and answer slower. One step may take up to
//  `timeout`; the whole file stays within ctest's 600 s.
const timeout = sanitized ? 90000 : 30000;
const budget = { chat: sanitized ? 380000 : 240000, link: sanitized ? 180000 : 120000 };
const chromiumPath = process.env.PARLEY_CHROMIUM ?? '/usr/bin/chromium';

const hosts = [];
const pages = [];
let browser;
after(async () => {
    await browser?.close();
    const failures = [];
    for (const host of hosts) await host.down().catch((error) => failures.push(error));
    if (failures.length) throw failures[0];
});

async function launch () {
    browser ??= await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
    return browser;
}

//  A page whose console errors are collected. Expected ones: the sign-in
//  screen asks POST /api/dev/token whether dev mode is on (400 or 404);
//  while page.offline is set, failed WebSocket connects and requests cut
//  by the kill; while page.refusal is set, an HTTP error of that path
//  (the browser logs every 4xx answer).
async function openPage (name, options = {}) {
    const context = await (await launch()).newContext(options);
    const page = await context.newPage();
    page.setDefaultTimeout(timeout);
    page.who = name;
    pages.push(page);
    page.errors = [];
    page.offline = false;
    page.refusal = null;
    page.on('console', (message) => {
        if (message.type() !== 'error') return;
        const text = message.text();
        const url = message.location().url ?? '';
        const failedLoad = /^Failed to load resource/.test(text);
        if (failedLoad && url.endsWith('/api/dev/token')) return;
        if (failedLoad && page.refusal && url.startsWith('http') && new URL(url).pathname === page.refusal) return;
        if (page.offline && /WebSocket connection to .* failed|net::ERR_/.test(text)) return;
        page.errors.push(`${name}: ${text} (${url})`);
    });
    page.on('pageerror', (error) => page.errors.push(`${name}: uncaught ${error.message}`));
    return page;
}

//  A test body that, when it fails, leaves a screenshot of every open
//  page and shows the actors' last log lines and the pages' errors
const scenario = (body) => async () => {
    try {
        await body();
    } catch (error) {
        for (const page of pages.filter((open) => !open.isClosed()))
            await page.screenshot({ path: join(shots, `failed-${page.who}.png`) }).catch(() => {});
        for (const host of hosts)
            for (const name of host.processes.keys())
                console.error(`--- ${host.hostId} ${name}, last lines:\n${host.log(name).split('\n').slice(-15).join('\n')}`);
        for (const page of pages) for (const line of page.errors) console.error(line);
        throw error;
    }
};

let shot = 0;
async function screenshot (page, step) {
    shot++;
    await page.screenshot({ path: join(shots, `${String(shot).padStart(2, '0')}-${step}.png`) });
}

async function signInByName (page, base, userId, name) {
    await page.goto(`${base}/`);
    await page.getByLabel('Your user id').fill(userId);
    await page.getByLabel('Display name').fill(name);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'New direct chat' }).waitFor();
    await online(page);
}

//  The connection line is hidden once the STOMP session is up
const online = (page) => page.getByRole('status').waitFor({ state: 'hidden' });

const composer = (page) => page.getByLabel('message', { exact: true });
const log = (page) => page.getByRole('log');

async function send (page, text) {
    await composer(page).fill(text);
    await composer(page).press('Enter');
    await log(page).getByText(text, { exact: true }).waitFor();
}

//  The read mark of one of our own messages
const mark = (page, text, value) =>
    log(page).getByRole('listitem').filter({ hasText: text }).getByText(value, { exact: true });

//  How many message elements show exactly this text
const count = (page, text) => log(page).getByText(text, { exact: true }).count();

const memberOnline = (page, who) =>
    page.getByRole('list', { name: 'Members' }).getByRole('listitem').filter({ hasText: new RegExp(`^${who}, online$`, 'i') });

//  A router tells no ENTER or LEAVE while it learns who is online (a
//  third of presence-timeout-s after its start): keep that short
const devHost = ['--dev-mode', '1', '--presence-timeout-s', '3'];

test('two people chat across two hosts, through a reload and a kill -9', { timeout: budget.chat }, scenario(async () => {
    const a = await new Host({ hostId: 'wa', extra: devHost }).up();
    hosts.push(a);
    const b = await a.sibling('wb', { extra: devHost });
    hosts.push(b);
    const alice = await openPage('alice');
    const bob = await openPage('bob');

    //  Sign-in by name
    await alice.goto(`${a.base}/`);
    await alice.getByLabel('Your user id').waitFor();
    await screenshot(alice, 'sign-in-dev-mode');
    await signInByName(alice, a.base, 'alice', 'Alice');
    await signInByName(bob, b.base, 'bob', 'Bob');
    await screenshot(alice, 'alice-signed-in');

    //  The dialog shows the server's refusal as it is; Escape closes it
    alice.refusal = '/api/rooms';
    await alice.getByRole('button', { name: 'New direct chat' }).click();
    await alice.getByLabel('Their user id').fill('not an id!');
    await alice.getByRole('button', { name: 'Open chat' }).click();
    const refusal = alice.getByRole('dialog').getByRole('alert');
    await refusal.filter({ hasText: /\S/ }).waitFor();
    await screenshot(alice, 'refused-room');
    await alice.keyboard.press('Escape');
    await alice.getByRole('dialog').waitFor({ state: 'hidden' });
    alice.refusal = null;

    //  Alice opens a direct room with bob and writes before bob looks
    await alice.getByRole('button', { name: 'New direct chat' }).click();
    await alice.getByLabel('Their user id').fill('bob');
    await alice.getByRole('button', { name: 'Open chat' }).click();
    await send(alice, 'Hi Bob, are you there?');
    await mark(alice, 'Hi Bob, are you there?', 'sent').waitFor();
    await screenshot(alice, 'alice-sent');

    //  Bob's list gets the room live, with an unread badge and a preview
    const bobsRoom = bob.getByRole('button', { name: /alice/i });
    await bobsRoom.filter({ hasText: '1 unread' }).waitFor();
    await bobsRoom.filter({ hasText: 'Hi Bob, are you there?' }).waitFor();
    await screenshot(bob, 'bob-unread');

    //  Bob opens it: he sees the message, alice sees it read
    await bobsRoom.click();
    await log(bob).getByText('Hi Bob, are you there?', { exact: true }).waitFor();
    await mark(alice, 'Hi Bob, are you there?', 'read').waitFor();
    await screenshot(alice, 'alice-read');

    //  Both are in the room (presence), then each sees the other typing
    await memberOnline(alice, 'Bob').waitFor();
    await memberOnline(bob, 'Alice').waitFor();
    await composer(alice).pressSequentially('Glad you');
    await bob.getByText('Alice is typing…').waitFor();
    await screenshot(bob, 'bob-sees-alice-typing');
    await composer(alice).press('Enter');
    await log(bob).getByText('Glad you', { exact: true }).waitFor();
    await composer(bob).pressSequentially('Here!');
    await alice.getByText('Bob is typing…').waitFor();
    await screenshot(alice, 'alice-sees-bob-typing');
    await composer(bob).press('Enter');
    await log(alice).getByText('Here!', { exact: true }).waitFor();
    //  Shift+Enter is a new line, Enter sends
    await composer(bob).fill('Line one');
    await composer(bob).press('Shift+Enter');
    await composer(bob).pressSequentially('line two');
    await composer(bob).press('Enter');
    await log(alice).getByText('Line one\nline two', { exact: true }).waitFor();
    assert.equal(await log(alice).getByText('Line one', { exact: false }).innerText(), 'Line one\nline two');
    await screenshot(alice, 'conversation');

    //  A reload keeps bob signed in, in the same room, with the history
    await bob.reload();
    await log(bob).getByText('Hi Bob, are you there?', { exact: true }).waitFor();
    await log(bob).getByText('Here!', { exact: true }).waitFor();
    assert.equal(await bob.getByLabel('Your user id').isVisible(), false, 'still signed in');
    await online(bob);
    await screenshot(bob, 'bob-reloaded');

    //  Bob's connection actor dies; alice goes on writing; bob writes too
    bob.offline = true;
    await b.kill('conn-0');
    await bob.getByRole('status').filter({ hasText: 'reconnecting' }).waitFor();
    const meanwhile = ['While you were away 1', 'While you were away 2', 'While you were away 3',
        'While you were away 4', 'While you were away 5'];
    for (const text of meanwhile) await send(alice, text);
    for (const text of meanwhile) await mark(alice, text, 'sent').waitFor();
    await composer(bob).fill('Written offline');
    await composer(bob).press('Enter');
    await mark(bob, 'Written offline', 'sending…').waitFor();
    await screenshot(bob, 'bob-reconnecting');

    //  It comes back: bob gets every message once, in order, and his own
    //  offline message goes out once
    b.start('conn-0');
    await online(bob);
    bob.offline = false;
    await log(bob).getByText(meanwhile[meanwhile.length - 1], { exact: true }).waitFor();
    await log(alice).getByText('Written offline', { exact: true }).waitFor();
    //  Something sent after the resume arrives after all the replay
    await send(alice, 'Welcome back');
    await log(bob).getByText('Welcome back', { exact: true }).waitFor();
    await mark(alice, 'Welcome back', 'read').waitFor();
    const seen = await log(bob).getByText(/^While you were away \d$/).allTextContents();
    assert.deepEqual(seen, meanwhile, 'every message sent meanwhile, once, in order');
    for (const text of [...meanwhile, 'Hi Bob, are you there?', 'Written offline']) {
        assert.equal(await count(bob, text), 1, `"${text}" once on bob's page`);
        assert.equal(await count(alice, text), 1, `"${text}" once on alice's page`);
    }
    await mark(bob, 'Written offline', 'read').waitFor();
    await screenshot(bob, 'bob-resumed');
    await screenshot(alice, 'alice-after-resume');

    //  An expired token on a dev-mode host: a fresh one for the same user,
    //  without asking
    const dave = await openPage('dave');
    const expired = a.forgeToken({ sub: 'dave', name: 'Dave', exp: Math.floor(Date.now() / 1000) - 3600 });
    await dave.goto(`${a.base}/#token=${expired}`);
    await dave.getByText('@dave', { exact: true }).waitFor();
    await online(dave);
    await dave.getByRole('button', { name: 'New group' }).waitFor();

    assert.deepEqual([...alice.errors, ...bob.errors, ...dave.errors], [], 'no console errors');
    for (const page of [alice, bob, dave]) await page.context().close();
}));

test('a sign-in link signs in without dev mode; the sign-in screen asks for a token', { timeout: budget.link }, scenario(async () => {
    const c = await new Host({ hostId: 'wc' }).up();
    hosts.push(c);
    //  A phone-sized window: one pane at a time
    const carol = await openPage('carol', { viewport: { width: 375, height: 740 } });

    await carol.goto(`${c.base}/`);
    await carol.getByLabel('Token').waitFor();
    assert.equal(await carol.getByLabel('Your user id').isVisible(), false, 'no sign-in by name');
    await carol.getByText('parleyctl token').waitFor();
    await screenshot(carol, 'sign-in-token');

    //  An expired link: without dev mode, back to the sign-in screen
    const expired = c.forgeToken({ sub: 'carol', name: 'Carol', exp: Math.floor(Date.now() / 1000) - 3600 });
    await carol.goto(`${c.base}/#token=${expired}`);
    await carol.getByText('Your session has expired').waitFor();
    await carol.getByLabel('Token').waitFor();

    const token = c.token('carol', 'Carol');
    await c.createRoom(token, { kind: 'group', name: 'Book club', members: ['dave'] });
    await carol.goto(`${c.base}/#token=${token}`);
    await carol.getByText('Carol', { exact: true }).waitFor();
    await online(carol);
    assert.ok(!carol.url().includes('token'), 'the token left the address bar');
    await screenshot(carol, 'carol-signed-in-narrow');

    await carol.getByRole('button', { name: /Book club/ }).click();
    await composer(carol).waitFor();
    assert.equal(await carol.getByRole('button', { name: 'New group' }).isVisible(), false, 'one pane at a time');
    await send(carol, 'Anyone read chapter 3?');
    await mark(carol, 'Anyone read chapter 3?', 'sent').waitFor();
    await screenshot(carol, 'carol-room-narrow');
    await carol.getByRole('button', { name: 'Back to rooms' }).click();
    await carol.getByRole('button', { name: /Book club/ }).filter({ hasText: 'Anyone read chapter 3?' }).waitFor();

    //  Older history comes in when scrolled to the top, in order, and
    //  what was on screen stays where it was
    const history = await c.createRoom(token, { kind: 'group', name: 'History', members: ['dave'] });
    const daveClient = await c.stomp(c.token('dave', 'Dave'));
    const texts = Array.from({ length: 80 }, (_, index) => `History ${String(index + 1).padStart(2, '0')}`);
    for (const text of texts) await sendWithReceipt(daveClient, history.id, text);
    await daveClient.deactivate();
    await carol.getByRole('button', { name: /History/ }).filter({ hasText: 'History 80' }).click();
    await log(carol).getByText('History 80', { exact: true }).waitFor();
    assert.equal(await count(carol, 'History 30'), 0, 'one page of 50 at first');
    const top = log(carol).getByText('History 31', { exact: true });
    await log(carol).evaluate((node) => { node.scrollTop = 0; });
    await log(carol).getByText('History 01', { exact: true }).waitFor();
    assert.deepEqual(await log(carol).getByText(/^History \d\d$/).allTextContents(), texts);
    const [box, view] = [await top.boundingBox(), await log(carol).boundingBox()];
    assert.ok(box.y >= view.y && box.y < view.y + view.height, 'the message that was on top is still in view');
    await log(carol).getByText('This is the beginning of the room.').waitFor();
    await screenshot(carol, 'carol-older-history');

    assert.deepEqual(carol.errors, [], 'no console errors');
    await carol.context().close();
}));
