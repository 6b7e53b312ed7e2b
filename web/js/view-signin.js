//  The sign-in screen: by name in dev mode (POST /api/dev/token), else by
//  pasting a token. onToken(token, { dev }) takes it from there.
import { decodeClaims, mintDevToken } from './auth.js';

const $ = (id) => document.getElementById(id);

export function showSignIn ({ devMode, message, onToken }) {
    $('app').hidden = true;
    $('signin').hidden = false;
    const dev = $('dev-form');
    const paste = $('token-form');
    const error = $('signin-error');
    dev.hidden = !devMode;
    paste.hidden = devMode;
    error.textContent = message ?? '';

    dev.addEventListener('submit', async (event) => {
        event.preventDefault();
        const userId = dev.userId.value.trim();
        const name = dev.name.value.trim() || userId;
        error.textContent = '';
        busy(dev, true);
        try {
            onToken(await mintDevToken(userId, name), { dev: true });
        } catch (failure) {
            error.textContent = failure.message;
            busy(dev, false);
        }
    });

    paste.addEventListener('submit', (event) => {
        event.preventDefault();
        const token = paste.token.value.trim().replace(/^Bearer\s+/i, '');
        if (!decodeClaims(token)) {
            error.textContent = 'That is not a token: it should look like xxxxx.yyyyy.zzzzz.';
            return;
        }
        onToken(token, { dev: false });
    });

    (devMode ? dev.userId : paste.token).focus();
}

export function hideSignIn () {
    $('signin').hidden = true;
    $('app').hidden = false;
}

function busy (form, on) {
    for (const control of form.elements) control.disabled = on;
}
