//  Messages the user sent that the server has not confirmed yet. Each
//  keeps its clientMsgId for good: whatever did not get a RECEIPT is sent
//  again after a reconnect (or a reload) with the same id, and the server
//  stores and delivers it once. An entry leaves when its MESSAGE is seen.
//  Kept in sessionStorage: a reload of the tab loses nothing, and two tabs
//  of one user do not overwrite each other's list.

const KEY_PREFIX = 'parley.outbox.';

//  Refusals that say "later": the message stays queued and goes again on
//  the next connection. Anything else (too long, not a member) is final.
const TRANSIENT = /rate limit|in flight|busy|try again|out of memory/i;

export class Outbox {
    constructor (userId) {
        this.key = KEY_PREFIX + userId;
        this.entries = [];
        try {
            this.entries = JSON.parse(sessionStorage.getItem(this.key)) ?? [];
        } catch { /* a damaged entry list is dropped */ }
        //  What got a receipt before the reload is stored; history shows it
        this.entries = this.entries.filter((entry) => entry.state !== 'sent');
        for (const entry of this.entries) entry.session = 0;
    }

    save () {
        const kept = this.entries.map(({ session, ...entry }) => entry);
        if (kept.length) sessionStorage.setItem(this.key, JSON.stringify(kept));
        else sessionStorage.removeItem(this.key);
    }

    add (roomId, content) {
        const entry = { clientMsgId: crypto.randomUUID(), roomId, content,
            createdAt: new Date().toISOString(), state: 'queued', session: 0 };
        this.entries.push(entry);
        this.save();
        return entry;
    }

    find (clientMsgId) { return this.entries.find((entry) => entry.clientMsgId === clientMsgId); }
    forRoom (roomId) { return this.entries.filter((entry) => entry.roomId === roomId); }

    //  Queued and not yet sent on this connection, oldest first
    unsent (session) {
        return this.entries.filter((entry) => entry.state === 'queued' && entry.session !== session);
    }

    receipted (clientMsgId, seq) {
        const entry = this.find(clientMsgId);
        if (!entry) return;
        Object.assign(entry, { state: 'sent', seq });
        this.save();
    }

    //  The server refused it; a transient refusal only waits for the next
    //  connection
    refused (clientMsgId, reason) {
        const entry = this.find(clientMsgId);
        if (!entry) return;
        if (TRANSIENT.test(reason)) entry.session = -1;
        else Object.assign(entry, { state: 'failed', error: reason });
        this.save();
    }

    retry (clientMsgId) {
        const entry = this.find(clientMsgId);
        if (entry) Object.assign(entry, { state: 'queued', session: 0, error: undefined });
        this.save();
    }

    //  Delivered (its MESSAGE arrived), stored (receipted, room not open)
    //  or discarded by the user
    remove (clientMsgId) {
        const before = this.entries.length;
        this.entries = this.entries.filter((entry) => entry.clientMsgId !== clientMsgId);
        if (this.entries.length !== before) this.save();
        return this.entries.length !== before;
    }
}
