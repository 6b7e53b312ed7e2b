//  The load of the Redis failover tests (issue 12): rooms with one sender
//  each that sends again with the same clientMsgId until it has a RECEIPT,
//  a subscriber that stays, and one that leaves when Redis fails and
//  resumes with since-seq (again after each ERROR, as an app with
//  @stomp/stompjs does). check() then proves nothing receipted was lost:
//  every message receipted with the seq of its place, stored once with
//  it, no dead letter, and every subscriber has 1..perRoom once, in order.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { collect, sendWithReceipt, sleep, waitFor, withMongo } from './harness.mjs';

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

//  Rejects once the client got an ERROR or lost its connection
function broken (client) {
    let timer;
    const promise = new Promise((resolve, reject) => {
        timer = setInterval(() => {
            if (client.closed || client.errors.length)
                reject(new Error(client.errors[0]?.headers.message ?? 'connection closed'));
        }, 20);
    });
    return { promise, stop: () => clearInterval(timer) };
}

//  Run fn (a promise) while watching client; the watch ends either way
async function watching (client, promise) {
    const watch = broken(client);
    try {
        return await Promise.race([promise, watch.promise]);
    } finally {
        watch.stop();
    }
}

export class FailoverLoad {
    //  Senders on sendHost, subscribers that stay on stayHost, the ones
    //  that resume on resumeHost
    constructor ({ sendHost, stayHost, resumeHost, rooms = 20, perRoom = 100, pauseMs = 15 }) {
        Object.assign(this, { sendHost, stayHost, resumeHost, perRoom, pauseMs });
        this.roomCount = rooms;
        this.rooms = [];
        this.receipted = 0;
        this.stopping = false;
    }

    async setup () {
        for (let r = 0; r < this.roomCount; r++) {
            const token = this.sendHost.token(`s${r}`);
            const id = (await this.sendHost.createRoom(token, { kind: 'group', name: `failover ${r}`,
                members: [`b${r}`, `c${r}`] })).id;
            const stayed = await this.stayHost.stomp(this.stayHost.token(`b${r}`));
            const leaving = await this.resumeHost.stomp(this.resumeHost.token(`c${r}`));
            this.rooms.push({ id, seq: [], stayedClient: stayed, stayed: await collect(stayed, id),
                leaving, before: await collect(leaving, id), resumed: null, follower: null,
                sender: { token, client: null, refusals: [] } });
        }
        return this;
    }

    //  Send until a RECEIPT comes: after an ERROR (503: Redis failing
    //  over, replicas not confirming) or a lost connection, a new
    //  connection and the same clientMsgId. Resolves with the RECEIPT's seq.
    async sendSurely (room, content, clientMsgId) {
        const sender = room.sender;
        while (!this.stopping) {
            if (!sender.client || sender.client.closed || sender.client.errors.length) {
                sender.client?.deactivate().catch(() => {});
                sender.client = null;
                try {
                    sender.client = await this.sendHost.stomp(sender.token);
                } catch {
                    await sleep(100);
                    continue;
                }
            }
            try {
                return await watching(sender.client, sendWithReceipt(sender.client, room.id, content, clientMsgId));
            } catch (error) {
                sender.refusals.push(error.message);
                await sleep(50);
            }
        }
        throw new Error('the load stopped');
    }

    start () {
        this.sending = Promise.all(this.rooms.map(async (room, r) => {
            for (let i = 0; i < this.perRoom; i++) {
                room.seq[i] = await this.sendSurely(room, `r${r} m${i}`, `r${r}-m${i}`);
                this.receipted++;
                await sleep(this.pauseMs);
            }
        }));
        this.sending.catch(() => {});          //  a failed test stops the senders
        return this;
    }

    //  The leaving subscribers go
    async leave () {
        for (const room of this.rooms) await room.leaving.deactivate();
    }

    //  ... and subscribe again from the last seq they have
    resume () {
        this.rooms.forEach((room, r) => {
            room.resumed = room.before.map((m) => m.body);
            room.follower = this.follow(this.resumeHost.token(`c${r}`), room.id, room.resumed);
        });
    }

    follow (token, roomId, seen) {
        const state = { stop: false, errors: [], client: null };
        state.done = (async () => {
            while (!state.stop && !this.stopping) {
                try {
                    const client = state.client = await this.resumeHost.stomp(token);
                    const receipt = `s-${randomUUID()}`;
                    const confirmed = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
                    client.subscribe(`/topic/rooms/${roomId}`, (message) => seen.push(JSON.parse(message.body)),
                        { receipt, 'since-seq': String(seen.findLast((body) => body.seq)?.seq ?? 0) });
                    await watching(client, confirmed);
                    while (!state.stop && !this.stopping && !client.closed && !client.errors.length) await sleep(20);
                    if (client.errors.length) state.errors.push(client.errors[0].headers.message);
                } catch (error) {
                    state.errors.push(error.message);
                }
                await state.client?.deactivate().catch(() => {});
                state.client = null;
                if (!state.stop) await sleep(100);
            }
        })();
        return state;
    }

    //  Every sender done within ms
    async sent (ms = 60000) {
        let deadline;
        await Promise.race([this.sending, new Promise((resolve, reject) => {
            deadline = setTimeout(() => reject(new Error(`not all receipted in ${ms} ms: ${this.receipted}`)), ms);
        })]).finally(() => clearTimeout(deadline));
    }

    //  Everything receipted, delivered and stored once; resolves with what
    //  the clients went through
    async check (database, hosts) {
        const { perRoom } = this;
        for (const [r, room] of this.rooms.entries()) {
            //  One sender per room: every message has the seq of its place
            assert.deepEqual(room.seq, range(1, perRoom), `room ${r}: receipted seqs`);
            await waitFor(`room ${r}: the subscriber that stayed has all`,
                () => room.stayed.some((m) => m.body.seq === perRoom), 30000);
            await waitFor(`room ${r}: the resumed subscriber has all`,
                () => room.resumed.some((m) => m.seq === perRoom), 30000);
        }
        await sleep(300);
        for (const room of this.rooms) room.follower.stop = true;
        await Promise.all(this.rooms.map((room) => room.follower.done));
        for (const [r, room] of this.rooms.entries()) {
            const contents = range(0, perRoom - 1).map((i) => `r${r} m${i}`);
            //  Messages only: ENTER and LEAVE of the resuming member come too
            const stayed = room.stayed.map((m) => m.body).filter((body) => body.seq);
            assert.deepEqual(stayed.map((m) => m.seq), range(1, perRoom), `room ${r}: stayed`);
            assert.deepEqual(stayed.map((m) => m.content), contents);
            const resumed = room.resumed.filter((body) => body.seq);
            assert.deepEqual(resumed.map((m) => m.seq), range(1, perRoom), `room ${r}: resumed`);
            assert.deepEqual(resumed.map((m) => m.content), contents);
        }
        const total = this.rooms.length * perRoom;
        await waitFor(`all ${total} stored`, () => withMongo(database, async (db) =>
            (await db.collection('messages').countDocuments({})) === total), 60000);
        await withMongo(database, async (db) => {
            for (const [r, room] of this.rooms.entries()) {
                const stored = await db.collection('messages').find({ roomId: room.id }).sort({ seq: 1 }).toArray();
                assert.deepEqual(stored.map((m) => m.seq), range(1, perRoom), `room ${r}: stored seqs`);
                assert.deepEqual(stored.map((m) => m.clientMsgId), range(0, perRoom - 1).map((i) => `r${r}-m${i}`));
            }
        });
        for (const host of hosts)
            assert.equal(await host.counter('parley_bridge_dead_lettered_total'), 0, `${host.hostId}: dead letters`);
        const kinds = (texts) => [...new Set(texts.map((text) => text.replace(/\d+/g, 'N')))].join('; ');
        const refusals = this.rooms.flatMap((room) => room.sender.refusals);
        const resumes = this.rooms.flatMap((room) => room.follower.errors);
        return `${refusals.length} sends refused and sent again (${kinds(refusals)}); ` +
            `${resumes.length} resumes subscribed again (${kinds(resumes)})`;
    }

    //  After the test, passed or not
    async stop () {
        this.stopping = true;
        await Promise.all(this.rooms.map((room) => room.follower?.done));
        await Promise.all(this.rooms.flatMap((room) => [room.sender.client, room.stayedClient, room.leaving])
            .filter(Boolean).map((client) => client.deactivate().catch(() => {})));
    }
}
