//  kill -9 the persistence actor while 1,000 messages flow: after it starts
//  again every message is in MongoDB exactly once (the entries it had not
//  confirmed stay pending in the persist group and are handed out again).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, collect, sendWithReceipt, sleep, waitFor, withMongo } from './harness.mjs';

const TOTAL = 1000;
let host;
after(async () => { await host?.down(); });

test('persistence actor killed mid-stream: every message stored exactly once', async () => {
    host = await new Host({ extra: ['--persist-timeout-ms', '2000', '--store-batch', '64'] }).up();
    const aliceToken = host.token('alice', 'Alice');
    const room = await host.createRoom(aliceToken, { kind: 'direct', members: ['bob'] });
    const alice = await host.stomp(aliceToken);
    const bob = await host.stomp(host.token('bob', 'Bob'));
    const bobSees = await collect(bob, room.id);

    const receipts = [];
    let killed = false;
    for (let i = 0; i < TOTAL; i++) {
        receipts.push(sendWithReceipt(alice, room.id, `message ${i}`));
        if (i === 300) {
            //  Kill the store while messages are in flight
            await host.kill('store-0');
            killed = true;
        }
        if (i === 600) {
            //  Receipts keep coming while no store runs: the messages wait
            //  pending in the persist group
            await Promise.all(receipts);
            const storedWhileDown = await withMongo(host.database,
                (db) => db.collection('messages').countDocuments({ roomId: room.id }));
            assert.ok(storedWhileDown <= 301, `${storedWhileDown} stored while no store ran`);
            host.start('store-0');
        }
        if (i % 50 === 0) await sleep(5);
    }
    assert.ok(killed);
    const seqs = await Promise.all(receipts);
    assert.equal(new Set(seqs).size, TOTAL, 'every SEND got its own receipt while the store was down');
    await waitFor('live delivery of all', () => bobSees.length === TOTAL, 30000);

    await waitFor('all messages in MongoDB', () => withMongo(host.database,
        async (db) => (await db.collection('messages').countDocuments({ roomId: room.id })) === TOTAL), 60000);
    await sleep(1000);
    await withMongo(host.database, async (db) => {
        const documents = await db.collection('messages').find({ roomId: room.id }).toArray();
        assert.equal(documents.length, TOTAL, 'no duplicate appeared later');
        const seqsStored = documents.map((d) => d.seq).sort((a, b) => a - b);
        assert.deepEqual(seqsStored, Array.from({ length: TOTAL }, (_, i) => i + 1));
    });
    await alice.deactivate();
    await bob.deactivate();
});
