//  The message log of the open room: one element per message (keyed by
//  seq, or by clientMsgId while pending), the read marks of our own
//  messages, older history on scrolling to the top, and READ once the
//  newest message is on screen.
import { state, on, nameOf } from './store.js';
import { el, reconcile, shortTime, longTime, atBottom } from './dom.js';

const $ = (id) => document.getElementById(id);
const parts = new WeakMap();    //  li -> its sender, time, text and status elements

export function setupMessages ({ room, sender }) {
    const log = $('log');
    const list = $('messages');
    const jump = $('jump');
    let shown = null;           //  the RoomState on screen
    let newest = 0;             //  highest seq on screen

    //  offsetParent is null while the pane is not displayed (narrow screens)
    room.atBottom = () => log.offsetParent !== null && atBottom(log);

    log.addEventListener('scroll', () => {
        if (log.scrollTop < 200) room.loadOlder();
        if (atBottom(log)) {
            jump.hidden = true;
            room.maybeMarkRead();
        }
    }, { passive: true });
    jump.addEventListener('click', () => {
        log.scrollTop = log.scrollHeight;
        $('message').focus();
    });
    document.addEventListener('visibilitychange', () => room.maybeMarkRead());
    window.addEventListener('focus', () => room.maybeMarkRead());
    list.addEventListener('click', (event) => {
        const button = event.target.closest('button[data-action]');
        if (!button) return;
        const id = button.closest('li').dataset.clientMsgId;
        if (button.dataset.action === 'retry') sender.retry(id);
        else sender.discard(id);
    });

    on('messages', () => {
        const current = state.room;
        const fresh = current !== shown;
        if (fresh) {
            list.replaceChildren();
            shown = current;
            newest = 0;
            jump.hidden = true;
        }
        if (!current) return;
        const follow = fresh || atBottom(log);
        const anchor = follow ? null : firstVisible(log, list);
        const anchorOffset = anchor ? anchor.offsetTop - log.scrollTop : 0;
        reconcile(list, items(current, sender), (item) => item.key, create, (li, item) => update(li, item, current));
        //  At the bottom: stay there. Else keep the message in view where
        //  it was (older history was put above it).
        if (follow) log.scrollTop = log.scrollHeight;
        else if (anchor?.isConnected) log.scrollTop = anchor.offsetTop - anchorOffset;
        if (!follow && current.highest() > newest && !fresh) jump.hidden = false;
        newest = current.highest();
        room.maybeMarkRead();
        //  A short history that does not fill the pane cannot be scrolled up
        if (log.scrollHeight <= log.clientHeight && current.hasOlder) room.loadOlder();
    });
}

function items (current, sender) {
    return [
        ...current.list().map((message) => ({ key: `s${message.seq}`, message })),
        ...sender.pending(current).map((entry) => ({ key: `c${entry.clientMsgId}`, message: entry, pending: true })),
    ];
}

function firstVisible (log, list) {
    for (const li of list.children)
        if (li.offsetTop + li.offsetHeight > log.scrollTop) return li;
    return null;
}

function create () {
    const li = el('li', { className: 'msg' });
    const refs = {
        sender: el('span', { className: 'sender' }),
        time: el('time'),
        text: el('p', { className: 'text' }),
        status: el('div', { className: 'status' }),
    };
    li.append(el('div', { className: 'meta' }, refs.sender, refs.time), refs.text, refs.status);
    parts.set(li, refs);
    return li;
}

function update (li, item, current) {
    const refs = parts.get(li);
    const { message } = item;
    const mine = item.pending || message.senderId === state.me.id;
    li.classList.toggle('mine', mine);
    li.classList.toggle('pending', Boolean(item.pending) && message.state !== 'failed');
    li.classList.toggle('failed', message.state === 'failed');
    if (item.pending) li.dataset.clientMsgId = message.clientMsgId;
    setText(refs.sender, item.pending ? state.me.name : (message.senderName || nameOf(message.senderId)));
    if (refs.time.dateTime !== message.createdAt) {
        refs.time.dateTime = message.createdAt ?? '';
        refs.time.textContent = shortTime(message.createdAt);
        refs.time.title = longTime(message.createdAt);
    }
    setText(refs.text, String(message.content ?? ''));
    if (mine) renderStatus(refs.status, item, current);
    else refs.status.replaceChildren();
}

function setText (node, text) {
    if (node.textContent !== text) node.textContent = text;
}

//  Our own messages say how far they got: sending, sent, read
function renderStatus (status, item, current) {
    const { message } = item;
    if (message.state === 'failed') {
        if (status.dataset.failed === message.error) return;
        status.dataset.failed = message.error;
        status.replaceChildren(el('span', { className: 'mark' }, `not sent: ${message.error}`),
            el('button', { type: 'button', className: 'link', dataset: { action: 'retry' } }, 'Retry'),
            el('button', { type: 'button', className: 'link', dataset: { action: 'discard' } }, 'Discard'));
        return;
    }
    delete status.dataset.failed;
    const text = item.pending ? (message.state === 'sent' ? 'sent' : 'sending…') : readMark(message.seq, current);
    if (status.childElementCount === 1 && status.firstChild.textContent === text) return;
    status.replaceChildren(el('span', { className: `mark ${text.startsWith('read') ? 'read' : ''}` }, text));
}

function readMark (seq, current) {
    const { readers, others } = current.readers(seq, state.me.id);
    if (others === 0 || readers === 0) return 'sent';
    if (readers === others) return current.detail.kind === 'direct' ? 'read' : 'read by everyone';
    return `read by ${readers}`;
}
