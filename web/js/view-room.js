//  The open room's pane around the log: title, members with online dots,
//  who is typing, the composer, and the back button of narrow screens.
import { state, on, nameOf, roomTitle, findRoom } from './store.js';
import { el, reconcile } from './dom.js';

const $ = (id) => document.getElementById(id);

export function setupRoomView ({ room, sender }) {
    const textarea = $('message');

    $('composer').addEventListener('submit', (event) => {
        event.preventDefault();
        const content = textarea.value;
        if (!state.room || !content.trim()) return;
        sender.send(state.room.id, content);
        room.sent();
        textarea.value = '';
        fit(textarea);
    });
    //  Enter sends, Shift+Enter is a new line (an IME composing text keeps Enter)
    textarea.addEventListener('keydown', (event) => {
        if (event.key !== 'Enter' || event.shiftKey || event.isComposing) return;
        event.preventDefault();
        $('composer').requestSubmit();
    });
    textarea.addEventListener('input', () => {
        fit(textarea);
        if (textarea.value.trim()) room.typed();
    });
    $('back').addEventListener('click', () => {
        const id = state.room?.id;
        room.close();
        document.querySelector(`#rooms button[data-room="${CSS.escape(id ?? '')}"]`)?.focus();
    });

    on('room', () => render(room));
}

//  The composer grows with its text up to a few lines
function fit (textarea) {
    textarea.style.height = 'auto';
    textarea.style.height = `${Math.min(textarea.scrollHeight, 160)}px`;
}

function render (room) {
    const current = state.room;
    const open = Boolean(current || state.opening);
    $('app').classList.toggle('room-open', open);
    $('room-main').hidden = !current;
    $('room-none').hidden = open;
    $('room-loading').hidden = !state.opening;
    if (!current) return;
    const summary = findRoom(current.id) ?? current.detail;
    $('room-title').textContent = roomTitle(summary);
    renderMembers(current);
    renderTyping(current);
    const older = $('older');
    older.hidden = !current.loadingOlder && current.hasOlder;
    older.textContent = current.loadingOlder ? 'Loading older messages…'
        : current.hasOlder ? '' : 'This is the beginning of the room.';
    room.maybeMarkRead();
}

//  While our own socket is down nobody's presence is known: no green dots
function isOnline (current, member) {
    return state.connection === 'online' && (current.online.has(member) || member === state.me.id);
}

function renderMembers (current) {
    const members = [...current.members].sort((a, b) =>
        Number(isOnline(current, b)) - Number(isOnline(current, a)) || nameOf(a).localeCompare(nameOf(b)));
    reconcile($('members'), members, (member) => member, () => el('li', { className: 'member' },
        el('span', { className: 'dot', 'aria-hidden': 'true' }), el('span', { className: 'name' }),
        el('span', { className: 'sr-only state' })), (li, member) => {
        const online = isOnline(current, member);
        li.classList.toggle('online', online);
        li.querySelector('.name').textContent = member === state.me.id ? `${nameOf(member)} (you)` : nameOf(member);
        li.querySelector('.state').textContent = online ? ', online' : ', offline';
        li.title = `${member}: ${online ? 'online' : 'offline'}`;
    });
}

function renderTyping (current) {
    const names = current.typists().filter((id) => id !== state.me.id).map(nameOf);
    const text = names.length === 0 ? ''
        : names.length === 1 ? `${names[0]} is typing…`
        : names.length === 2 ? `${names[0]} and ${names[1]} are typing…`
        : 'Several people are typing…';
    const typing = $('typing');
    if (typing.textContent !== text) typing.textContent = text;
}
