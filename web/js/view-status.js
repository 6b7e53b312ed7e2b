//  The connection line ("reconnecting…" while the socket is down) and the
//  notices: errors the user reads and dismisses.
import { state, on, dismissNotice } from './store.js';
import { el, reconcile } from './dom.js';

const $ = (id) => document.getElementById(id);

const LABELS = { connecting: 'connecting…', reconnecting: 'reconnecting…', online: '' };

export function setupStatus () {
    const line = $('connection');
    const notices = $('notices');

    on('connection', () => {
        line.textContent = LABELS[state.connection];
        line.hidden = state.connection === 'online';
        $('app').classList.toggle('offline', state.connection !== 'online');
    });

    notices.addEventListener('click', (event) => {
        const button = event.target.closest('button[data-notice]');
        if (button) dismissNotice(Number(button.dataset.notice));
    });
    //  Escape dismisses the newest notice when no dialog is open
    document.addEventListener('keydown', (event) => {
        if (event.key === 'Escape' && state.notices.length && !document.querySelector('dialog[open]'))
            dismissNotice(state.notices[state.notices.length - 1].id);
    });

    on('notices', () => reconcile(notices, state.notices, (notice) => String(notice.id),
        (notice) => el('div', { className: 'notice', role: 'alert' },
            el('span', { className: 'notice-text' }, notice.text),
            el('button', { type: 'button', className: 'dismiss', 'aria-label': 'Dismiss',
                dataset: { notice: String(notice.id) } }, '×')),
        () => {}));
}
