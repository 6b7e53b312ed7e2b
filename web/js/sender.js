//  Sending TALK messages: through the outbox, each with a receipt. What
//  has no receipt when a connection ends goes again on the next one, with
//  the same clientMsgId (the server stores and delivers it once).
import { state, changed, findRoom, upsertRoom } from './store.js';

export class Sender {
    constructor ({ connection, outbox }) {
        this.connection = connection;
        this.outbox = outbox;
    }

    send (roomId, content) {
        this.outbox.add(roomId, content);
        changed('messages');
        this.flush();
    }

    //  Send everything queued that has not gone out on this connection,
    //  oldest first (called on every CONNECTED too)
    flush () {
        const session = this.connection.session;
        for (const entry of this.outbox.unsent(session)) {
            const body = { type: 'TALK', content: entry.content, clientMsgId: entry.clientMsgId };
            const sent = this.connection.publishWithReceipt(`/app/rooms/${entry.roomId}`, body,
                `m:${entry.clientMsgId}`, (frame) => this.receipted(entry.clientMsgId, Number(frame.headers.seq)));
            if (!sent) return;
            entry.session = session;
        }
    }

    //  Stored. It stays on screen as "sent" until its MESSAGE arrives in
    //  the open room; for another room the history will have it.
    receipted (clientMsgId, seq) {
        const entry = this.outbox.find(clientMsgId);
        if (!entry) return;
        if (state.room?.id === entry.roomId && !state.room.holds(clientMsgId)) this.outbox.receipted(clientMsgId, seq);
        else this.outbox.remove(clientMsgId);
        preview(entry, seq);
        changed('messages');
    }

    //  An ERROR frame named this send's receipt
    refused (clientMsgId, reason) {
        this.outbox.refused(clientMsgId, reason);
        changed('messages');
    }

    retry (clientMsgId) {
        this.outbox.retry(clientMsgId);
        changed('messages');
        this.flush();
    }

    discard (clientMsgId) {
        if (this.outbox.remove(clientMsgId)) changed('messages');
    }

    //  A message of ours arrived: its pending copy goes
    delivered (message) {
        if (message.senderId === state.me.id && message.clientMsgId && this.outbox.remove(message.clientMsgId))
            changed('messages');
    }

    //  A room was loaded: what its history already holds is no longer pending
    retire (room) {
        for (const entry of this.outbox.forRoom(room.id))
            if (room.holds(entry.clientMsgId)) this.outbox.remove(entry.clientMsgId);
    }

    //  What to show as pending in a room, in the order it was sent
    pending (room) {
        return this.outbox.forRoom(room.id).filter((entry) => !room.holds(entry.clientMsgId));
    }
}

//  The room list shows our message as the room's last one at once: no
//  event tells the sender, and the room may be closed before its MESSAGE
//  comes (the next list refresh brings the server's own copy)
function preview (entry, seq) {
    const summary = findRoom(entry.roomId);
    if (!summary || !(seq > (summary.lastMessage?.seq ?? 0))) return;
    upsertRoom({ id: entry.roomId, lastSeq: seq, lastMessage: { roomId: entry.roomId, seq, type: 'TALK',
        senderId: state.me.id, senderName: state.me.name, content: entry.content,
        clientMsgId: entry.clientMsgId, createdAt: entry.createdAt } });
}
