//  The app's state in one place, and who to tell when part of it changes.
//  Views subscribe to a topic and re-render; many changes within one task
//  (a burst of frames, a history page) render once.

export const state = {
    me: null,                   //  { id, name } from the token
    rooms: [],                  //  room summaries (GET /api/rooms), newest activity first
    room: null,                 //  the open room: a RoomState, or null
    opening: null,              //  id of the room being loaded
    roomsLoaded: false,
    connection: 'connecting',   //  'connecting' | 'online' | 'reconnecting'
    notices: [],                //  { id, text }: errors the user may dismiss
    everOnline: false,          //  a CONNECTED was seen: down now means "reconnecting"
};

const listeners = new Map();    //  topic -> [fn]
const pending = new Set();

export function on (topic, fn) {
    listeners.set(topic, [...(listeners.get(topic) ?? []), fn]);
}

//  Topics: 'rooms', 'room' (the open room's head, members, typing),
//  'messages', 'connection', 'notices'
export function changed (...topics) {
    if (pending.size === 0) queueMicrotask(flush);
    for (const topic of topics) pending.add(topic);
}

//  A fixed order: the room pane is shown before its messages are laid out
//  (scroll positions need a visible element)
const ORDER = ['connection', 'rooms', 'room', 'messages', 'notices'];

function flush () {
    const topics = ORDER.filter((topic) => pending.has(topic));
    pending.clear();
    for (const topic of topics)
        for (const fn of listeners.get(topic) ?? []) fn(state);
}

//  ---- Display names: learnt from messages, typing events and tokens,
//  kept across reloads so a direct room shows a name, not an id

const NAMES_KEY = 'parley.names';
const names = new Map(readJson(NAMES_KEY, []));

function readJson (key, fallback) {
    try {
        return JSON.parse(localStorage.getItem(key)) ?? fallback;
    } catch {
        return fallback;
    }
}

export function learnName (id, name) {
    if (!id || typeof name !== 'string' || !name || names.get(id) === name) return;
    names.delete(id);
    names.set(id, name);
    //  The newest few hundred are plenty for one person's rooms
    localStorage.setItem(NAMES_KEY, JSON.stringify([...names].slice(-500)));
    changed('rooms', 'room');
}

export const nameOf = (id) => names.get(id) ?? id;

//  ---- Room summaries

export function roomTitle (room) {
    if (room.kind === 'group') return room.name || 'Unnamed group';
    const other = room.members?.find((member) => member !== state.me.id) ?? state.me.id;
    return nameOf(other);
}

const activity = (room) => room.lastMessage?.createdAt ?? room.createdAt ?? '';

//  Newest activity first; the server's order breaks ties (sort is stable)
export function sortRooms () {
    state.rooms.sort((a, b) => activity(b).localeCompare(activity(a)));
}

export const findRoom = (id) => state.rooms.find((room) => room.id === id);

export function setRooms (rooms) {
    state.rooms = rooms;
    for (const room of rooms) learnName(room.lastMessage?.senderId, room.lastMessage?.senderName);
    sortRooms();
    changed('rooms');
}

export function upsertRoom (room) {
    const index = state.rooms.findIndex((known) => known.id === room.id);
    if (index >= 0) state.rooms[index] = { ...state.rooms[index], ...room };
    else state.rooms.push({ unread: 0, lastMessage: null, ...room });
    sortRooms();
    changed('rooms');
}

export function removeRoom (id) {
    state.rooms = state.rooms.filter((room) => room.id !== id);
    changed('rooms');
}

//  ---- Notices

let noticeId = 0;

export function notice (text) {
    state.notices = [...state.notices.filter((known) => known.text !== text), { id: ++noticeId, text }];
    changed('notices');
}

export function dismissNotice (id) {
    state.notices = state.notices.filter((known) => known.id !== id);
    changed('notices');
}
