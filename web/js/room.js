//  The open room: load it (details and the newest page of history),
//  follow it live from the highest seq held (since-seq: no gap, and seq
//  keys make any overlap harmless), page older history, and say READ and
//  TYPING to the server.
import { state, changed, learnName, findRoom, upsertRoom, notice } from './store.js';
import { RoomState } from './room-state.js';

const PAGE = 50;
//  Per user: another account signed in on this browser opens its own
const roomKey = () => `parley.room.${state.me.id}`;
const READ_EVERY_MS = 500;
const TYPING_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 5000;

export const rememberedRoom = () => localStorage.getItem(roomKey());

export class RoomController {
    constructor ({ api, connection, sender }) {
        this.api = api;
        this.connection = connection;
        this.sender = sender;
        this.ticket = 0;            //  the latest open(): older answers are dropped
        this.readSent = 0;          //  highest READ seq sent for the open room
        this.lastReadAt = 0;
        this.readTimer = null;
        this.lastTypingAt = 0;
        this.atBottom = () => true; //  the message view replaces this
    }

    //  quiet: a room remembered from before a reload that is gone is
    //  dropped without a notice
    async open (id, { quiet = false } = {}) {
        if (state.room?.id === id) return;
        this.close({ forget: false });
        const ticket = this.ticket;
        state.opening = id;
        changed('room', 'rooms');
        try {
            const detail = await this.api.room(id);
            const page = await this.api.history(id, (Number(detail.lastSeq) || 0) + 1, PAGE);
            if (ticket === this.ticket) this.show(detail, page);
        } catch (error) {
            if (ticket !== this.ticket) return;
            state.opening = null;
            if (error.status === 403 || error.status === 404) localStorage.removeItem(roomKey());
            changed('room', 'rooms');
            if (!quiet) notice(`The room could not be opened: ${error.message}`);
        }
    }

    show (detail, page) {
        const room = new RoomState(detail);
        room.add(page);
        room.hasOlder = page.length >= PAGE && room.lowest() > 1;
        for (const message of page) learnName(message.senderId, message.senderName);
        state.room = room;
        state.opening = null;
        this.readSent = room.readSeq.get(state.me.id) ?? 0;
        this.lastTypingAt = 0;
        this.sender.retire(room);
        localStorage.setItem(roomKey(), room.id);
        this.connection.watch('room', `/topic/rooms/${room.id}`, (frame) => this.onFrame(room, frame),
            () => ({ 'since-seq': String(room.highest()), receipt: `sub:${room.id}` }));
        changed('room', 'messages', 'rooms');
    }

    isOpen (id) { return state.room?.id === id; }

    //  forget: a reload opens no room (the user closed it)
    close ({ forget = true } = {}) {
        this.ticket++;
        this.connection.unwatch('room');
        clearTimeout(this.readTimer);
        this.readTimer = null;
        state.room = null;
        state.opening = null;
        if (forget) localStorage.removeItem(roomKey());
        changed('room', 'messages', 'rooms');
    }

    //  The room went away under us (removed from it, or refused)
    closeIf (roomId, why) {
        if (state.room?.id !== roomId && state.opening !== roomId) return;
        this.close();
        if (why) notice(why);
    }

    //  After a reconnect: cursors and presence may have moved meanwhile
    async resync () {
        const room = state.room;
        if (!room) return;
        try {
            const detail = await this.api.room(room.id);
            if (state.room !== room) return;
            room.update(detail);
            //  A READ lost with the old socket is sent again
            this.readSent = Number(detail.readSeq?.[state.me.id]) || 0;
            changed('room', 'messages');
            this.maybeMarkRead();
        } catch (error) {
            if (error.status === 403 || error.status === 404) this.closeIf(room.id, `You are no longer in ${room.id}.`);
        }
    }

    onFrame (room, frame) {
        if (state.room !== room) return;
        let body;
        try {
            body = JSON.parse(frame.body);
        } catch {
            return;
        }
        switch (body.type ?? 'TALK') {
        case 'TALK': this.onTalk(room, body); break;
        case 'READ_STATUS': if (room.moveCursor(body.readerId, body.seq)) changed('messages'); break;
        case 'TYPING': this.onTyping(room, body); break;
        case 'ENTER': room.online.add(body.userId); changed('room'); break;
        case 'LEAVE': room.online.delete(body.userId); changed('room'); break;
        }
    }

    onTalk (room, message) {
        learnName(message.senderId, message.senderName);
        if (!room.add([message])) return;
        this.sender.delivered(message);
        room.typing.delete(message.senderId);
        const summary = findRoom(room.id);
        if (summary && (summary.lastMessage?.seq ?? 0) < message.seq)
            upsertRoom({ id: room.id, lastMessage: message, lastSeq: message.seq });
        changed('messages', 'room');
    }

    onTyping (room, event) {
        if (event.senderId === state.me.id) return;
        learnName(event.senderId, event.senderName);
        room.typing.set(event.senderId, Date.now() + TYPING_SHOWN_MS);
        changed('room');
        //  Render again once it has run out
        setTimeout(() => changed('room'), TYPING_SHOWN_MS + 50);
    }

    //  The user sees the newest messages of the room: open, page visible,
    //  scrolled to the bottom, connected
    reading (roomId) {
        return state.room?.id === roomId && document.visibilityState === 'visible'
            && this.connection.online && this.atBottom();
    }

    //  READ up to the newest message once the user can see it. At most
    //  every READ_EVERY_MS, and only forward.
    maybeMarkRead () {
        const room = state.room;
        if (!room || !this.reading(room.id)) return;
        const seq = room.highest();
        if (seq <= this.readSent) return;
        const wait = this.lastReadAt + READ_EVERY_MS - Date.now();
        if (wait > 0) {
            this.readTimer ??= setTimeout(() => {
                this.readTimer = null;
                this.maybeMarkRead();
            }, wait);
            return;
        }
        if (!this.connection.publish(`/app/rooms/${room.id}`, { type: 'READ', seq })) return;
        this.readSent = seq;
        this.lastReadAt = Date.now();
        room.moveCursor(state.me.id, seq);
        const summary = findRoom(room.id);
        if (summary?.unread && seq >= (summary.lastSeq ?? 0)) upsertRoom({ id: room.id, unread: 0 });
    }

    //  The user typed in the composer: TYPING at most every few seconds
    typed () {
        const room = state.room;
        const now = Date.now();
        if (!room || now - this.lastTypingAt < TYPING_EVERY_MS) return;
        if (this.connection.publish(`/app/rooms/${room.id}`, { type: 'TYPING' })) this.lastTypingAt = now;
    }

    //  A message went out: the others stop showing us typing when it
    //  arrives, so the next keystroke says TYPING again at once
    sent () { this.lastTypingAt = 0; }

    //  Older history when scrolled to the top; the view keeps its place
    async loadOlder () {
        const room = state.room;
        if (!room || !room.hasOlder || room.loadingOlder) return;
        room.loadingOlder = true;
        changed('room');
        try {
            const page = await this.api.history(room.id, room.lowest(), PAGE);
            for (const message of page) learnName(message.senderId, message.senderName);
            room.add(page);
            room.hasOlder = page.length >= PAGE && room.lowest() > 1;
        } catch (error) {
            notice(`Older messages could not be loaded: ${error.message}`);
        } finally {
            room.loadingOlder = false;
            changed('room', 'messages');
        }
    }
}
