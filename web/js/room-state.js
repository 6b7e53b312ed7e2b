//  The open room: its TALK messages by seq, the members' read cursors,
//  who is online and who is typing. Messages are keyed by seq, so the
//  history page, a since-seq replay and live delivery may overlap freely.

export class RoomState {
    constructor (detail) {
        this.id = detail.id;
        this.detail = detail;
        this.messages = new Map();          //  seq -> message body
        this.clientIds = new Set();         //  clientMsgIds held (to retire pending sends)
        this.sorted = [];
        this.readSeq = new Map();           //  userId -> seq
        this.online = new Set();
        this.typing = new Map();            //  userId -> until (ms)
        this.hasOlder = false;              //  history before the lowest seq held
        this.loadingOlder = false;
        this.update(detail);
    }

    //  A fresh GET /api/rooms/{id} (after a reconnect): cursors never move
    //  back; presence is taken as the server says now
    update (detail) {
        this.detail = { ...this.detail, ...detail };
        for (const [user, seq] of Object.entries(detail.readSeq ?? {})) this.moveCursor(user, seq);
        this.online = new Set(detail.online ?? []);
    }

    get members () { return this.detail.members ?? []; }

    //  Adds TALK messages not held yet; says how many were new
    add (messages) {
        let added = 0;
        for (const message of messages) {
            const seq = Number(message.seq);
            if (!(seq > 0) || (message.type && message.type !== 'TALK') || this.messages.has(seq)) continue;
            this.messages.set(seq, message);
            if (message.clientMsgId) this.clientIds.add(message.clientMsgId);
            added++;
        }
        if (added) this.sorted = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
        return added;
    }

    list () { return this.sorted; }
    highest () { return this.sorted.length ? this.sorted[this.sorted.length - 1].seq : 0; }
    lowest () { return this.sorted.length ? this.sorted[0].seq : 0; }
    holds (clientMsgId) { return this.clientIds.has(clientMsgId); }

    //  Read cursors only move forward; says whether this one moved
    moveCursor (user, seq) {
        if (!(Number(seq) > (this.readSeq.get(user) ?? 0))) return false;
        this.readSeq.set(user, Number(seq));
        return true;
    }

    //  How many of the other members have read up to seq, out of how many
    readers (seq, me) {
        const others = this.members.filter((member) => member !== me);
        const readers = others.filter((member) => (this.readSeq.get(member) ?? 0) >= seq).length;
        return { readers, others: others.length };
    }

    //  Who is typing now (ids), expired entries dropped
    typists (now = Date.now()) {
        for (const [user, until] of this.typing) if (until <= now) this.typing.delete(user);
        return [...this.typing.keys()];
    }
}
