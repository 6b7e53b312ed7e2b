//  The room list and the user's event queue: the list comes from
//  GET /api/rooms; UNREAD, ROOM_ADDED and ROOM_REMOVED events patch it at
//  once and ask for a fresh list (at most once a second) so previews and
//  order stay right.
import { state, changed, setRooms, upsertRoom, removeRoom, findRoom, notice } from './store.js';

const REFRESH_EVERY_MS = 1000;

export class RoomsController {
    constructor ({ api, connection, room }) {
        this.api = api;
        this.connection = connection;
        this.room = room;
        this.lastLoad = 0;
        this.timer = null;
    }

    start () {
        this.connection.watch('events', '/user/queue/events', (frame) => this.onEvent(frame));
    }

    stop () {
        clearTimeout(this.timer);
        this.timer = null;
    }

    async load () {
        this.lastLoad = Date.now();
        try {
            //  The room being read gets its READ: its old count would flash up
            const rooms = await this.api.rooms();
            setRooms(rooms.map((room) => (this.room.reading(room.id) ? { ...room, unread: 0 } : room)));
            state.roomsLoaded = true;
            changed('rooms');
        } catch (error) {
            //  Unreachable: the reconnect loads it again
            if (error.status !== 0) notice(`Your rooms could not be loaded: ${error.message}`);
        }
    }

    //  Debounced: one load at most every REFRESH_EVERY_MS
    refresh () {
        if (this.timer) return;
        const wait = Math.max(0, this.lastLoad + REFRESH_EVERY_MS - Date.now());
        this.timer = setTimeout(() => {
            this.timer = null;
            this.load();
        }, wait);
    }

    onEvent (frame) {
        let event;
        try {
            event = JSON.parse(frame.body);
        } catch {
            return;
        }
        switch (event.type) {
        case 'UNREAD':
            //  A room the user is reading gets its READ in a moment: no
            //  badge flashing up meanwhile
            if (findRoom(event.roomId))
                upsertRoom({ id: event.roomId, unread: this.room.reading(event.roomId) ? 0 : Number(event.unread) || 0 });
            break;
        case 'ROOM_ADDED':
            if (event.room?.id) upsertRoom(event.room);
            break;
        case 'ROOM_REMOVED':
            removeRoom(event.roomId);
            this.room.closeIf(event.roomId, 'You were removed from the room you had open.');
            break;
        case 'ERROR':
            notice(event.message ?? 'The server refused a request.');
            return;
        default:
            return;
        }
        this.refresh();
    }
}
