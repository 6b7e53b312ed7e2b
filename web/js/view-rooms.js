//  The room list: one button per room with its avatar, title, last
//  activity, a preview of the last message and the unread count.
import { state, on, roomTitle } from './store.js';
import { el, reconcile, shortTime } from './dom.js';
import { avatar } from './view-avatar.js';

const parts = new WeakMap();

export function setupRoomsView ({ room, onOpened }) {
    const list = document.getElementById('rooms');
    const empty = document.getElementById('rooms-empty');

    list.addEventListener('click', async (event) => {
        const button = event.target.closest('button[data-room]');
        if (!button) return;
        await room.open(button.dataset.room);
        if (state.room?.id === button.dataset.room) onOpened();
    });

    on('rooms', () => {
        reconcile(list, state.rooms, (summary) => summary.id, create, update);
        empty.hidden = !state.roomsLoaded || state.rooms.length > 0;
        //  The tab says there is something to read
        const unread = state.rooms.reduce((sum, summary) => sum + (Number(summary.unread) || 0), 0);
        document.title = unread ? `(${unread}) parley` : 'parley';
    });
}

function create (summary) {
    const refs = {
        avatar: el('span', { className: 'avatar', 'aria-hidden': 'true' }),
        title: el('span', { className: 'title' }),
        time: el('time', { className: 'when' }),
        preview: el('span', { className: 'preview' }),
        badge: el('span', { className: 'badge' }),
    };
    const button = el('button', { type: 'button', className: 'room-item', dataset: { room: summary.id } },
        refs.avatar,
        el('span', { className: 'room-text' },
            el('span', { className: 'row' }, refs.title, refs.time),
            el('span', { className: 'row' }, refs.preview, refs.badge)));
    const li = el('li', {}, button);
    parts.set(li, { ...refs, button });
    return li;
}

function update (li, summary) {
    const refs = parts.get(li);
    const title = roomTitle(summary);
    const open = state.room?.id === summary.id || state.opening === summary.id;
    if (open) refs.button.setAttribute('aria-current', 'true');
    else refs.button.removeAttribute('aria-current');
    avatar(refs.avatar, title, summary.kind === 'direct' ? title : summary.id);
    refs.title.textContent = title;
    const last = summary.lastMessage;
    const when = last?.createdAt ?? summary.createdAt;
    refs.time.textContent = when ? shortTime(when) : '';
    refs.time.dateTime = when ?? '';
    //  Shown whole on hover; CSS trims it to one line
    const preview = last ? `${last.senderId === state.me.id ? 'You' : (last.senderName || last.senderId)}: ${last.content}` : 'No messages yet';
    refs.preview.textContent = preview;
    refs.preview.title = preview;
    const unread = Number(summary.unread) || 0;
    refs.badge.hidden = unread === 0;
    const count = unread > 99 ? '99+' : String(unread);
    if (refs.badge.firstChild?.textContent !== count)
        refs.badge.replaceChildren(count, el('span', { className: 'sr-only' }, ' unread'));
}
