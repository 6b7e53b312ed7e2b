//  The two "new room" dialogs. Native <dialog>: modal, Escape closes it,
//  focus returns to the button that opened it. The server's error text is
//  shown as it is.
import { upsertRoom } from './store.js';

const $ = (id) => document.getElementById(id);

export function setupDialogs ({ api, room, onOpened }) {
    const direct = (form) => ({ kind: 'direct', members: [form.userId.value.trim()] });
    const group = (form) => ({
        kind: 'group',
        name: form.name.value.trim(),
        members: form.members.value.split(',').map((id) => id.trim()).filter(Boolean),
    });
    wire($('new-direct'), $('direct-dialog'), direct, api, room, onOpened);
    wire($('new-group'), $('group-dialog'), group, api, room, onOpened);
}

function wire (opener, dialog, request, api, room, onOpened) {
    const form = dialog.querySelector('form');
    const error = dialog.querySelector('.error');
    const submit = form.querySelector('button[type="submit"]');

    opener.addEventListener('click', () => {
        form.reset();
        error.textContent = '';
        dialog.showModal();
    });
    for (const button of dialog.querySelectorAll('[data-close]'))
        button.addEventListener('click', () => dialog.close());

    form.addEventListener('submit', async (event) => {
        event.preventDefault();
        error.textContent = '';
        submit.disabled = true;
        try {
            const created = await api.createRoom(request(form));
            upsertRoom(created);
            dialog.close();
            await room.open(created.id);
            if (room.isOpen(created.id)) onOpened();
        } catch (failure) {
            error.textContent = failure.message;
        } finally {
            submit.disabled = false;
        }
    });
}
