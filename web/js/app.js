//  The web chat of parley: sign in, then wire the connection, the room
//  list, the open room and the views together. Signing out reloads the
//  page, so a session is set up once per page and never torn down by hand.
import { decodeClaims, isExpired, takeTokenFromUrl, storedToken, storeToken, forgetToken,
    probeDevMode, mintDevToken } from './auth.js';
import { createApi } from './api.js';
import { Connection } from './connection.js';
import { Outbox } from './outbox.js';
import { Sender } from './sender.js';
import { RoomController, rememberedRoom } from './room.js';
import { RoomsController } from './rooms.js';
import { state, changed, learnName, notice } from './store.js';
import { showSignIn, hideSignIn } from './view-signin.js';
import { setupStatus } from './view-status.js';
import { setupRoomsView } from './view-rooms.js';
import { setupRoomView } from './view-room.js';
import { setupMessages } from './view-messages.js';
import { setupDialogs } from './view-dialogs.js';
import { avatar } from './view-avatar.js';

const FLASH_KEY = 'parley.signin.message';
const RENEW_AT_MOST_EVERY_MS = 10000;

const auth = {
    token: null,
    claims: null,
    dev: null,              //  promise: is the server in dev mode?
    renewing: null,         //  promise of the renewal under way
    renewedAt: 0,
    connection: null,
};

const devMode = () => (auth.dev ??= probeDevMode());

function adopt (token) {
    auth.token = token;
    auth.claims = decodeClaims(token);
    storeToken(token);
}

//  A dev-mode server mints a fresh token for the same user; otherwise
//  the user signs in again
async function freshToken (claims) {
    if (!(await devMode())) return null;
    try {
        return await mintDevToken(claims.sub, claims.name ?? claims.sub);
    } catch {
        return null;
    }
}

//  The token was refused or ran out (reason: the server's words): replace
//  it, or sign out. Says whether a fresh token is in place. Bounded, so a
//  server that refuses every token cannot make us loop.
function renew (reason = '') {
    auth.renewing ??= (async () => {
        const fresh = Date.now() - auth.renewedAt > RENEW_AT_MOST_EVERY_MS ? await freshToken(auth.claims) : null;
        if (fresh) {
            auth.renewedAt = Date.now();
            adopt(fresh);
            return true;
        }
        await signOut(/expir/i.test(reason) ? 'Your session has expired. Sign in again.'
            : `Your sign-in was not accepted (${reason || 'no reason given'}). Sign in again.`);
        return false;
    })().finally(() => { auth.renewing = null; });
    return auth.renewing;
}

async function connectHeaders () {
    if (auth.renewing) await auth.renewing;
    if (auth.token && isExpired(auth.claims) && !(await renew('token expired'))) return null;
    return auth.token ? { Authorization: `Bearer ${auth.token}` } : null;
}

//  Sign out: forget the token, the open room and what was never sent,
//  and start over from a clean page
async function signOut (message) {
    const me = auth.claims?.sub;
    auth.token = null;
    forgetToken();
    if (me) {
        localStorage.removeItem(`parley.room.${me}`);
        sessionStorage.removeItem(`parley.outbox.${me}`);
    }
    if (message) sessionStorage.setItem(FLASH_KEY, message);
    const stopped = auth.connection?.stop();
    await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 1000))]);
    location.reload();
}

//  STOMP ERROR frames. A receipt names what was refused; token trouble
//  renews the token; the rest only ends this socket (stompjs reconnects
//  and the session resumes).
function stompError (message, receiptId, { sender, room, rooms }) {
    if (receiptId?.startsWith('m:')) return sender.refused(receiptId.slice(2), message);
    if (receiptId?.startsWith('sub:')) {
        room.closeIf(receiptId.slice(4), `The room could not be followed: ${message}`);
        return rooms.refresh();
    }
    if (/\btoken\b/i.test(message)) return renew(message);
    if (/shutting down|slow consumer/i.test(message)) return undefined;
    return notice(message);
}

function start (token) {
    adopt(token);
    state.me = { id: auth.claims.sub, name: auth.claims.name || auth.claims.sub };
    learnName(state.me.id, state.me.name);
    hideSignIn();
    renderMe();
    const api = createApi({ token: () => auth.token, renew });
    const parts = controllers(api);
    setupViews(api, parts);
    parts.rooms.start();
    parts.connection.start();
    parts.rooms.load();
    const remembered = rememberedRoom();
    if (remembered) parts.room.open(remembered, { quiet: true });
    changed('connection', 'rooms', 'room', 'messages');
}

function controllers (api) {
    const parts = {};
    parts.connection = new Connection({
        headers: connectHeaders,
        onOnline: (session) => online(session, parts),
        onOffline: () => {
            state.connection = state.everOnline ? 'reconnecting' : 'connecting';
            changed('connection', 'room');
        },
        onError: (message, receiptId) => stompError(message, receiptId, parts),
    });
    auth.connection = parts.connection;
    parts.sender = new Sender({ connection: parts.connection, outbox: new Outbox(state.me.id) });
    parts.room = new RoomController({ api, connection: parts.connection, sender: parts.sender });
    parts.rooms = new RoomsController({ api, connection: parts.connection, room: parts.room });
    return parts;
}

function setupViews (api, { room, sender }) {
    //  Not on a phone: the on-screen keyboard would cover the room
    const focusComposer = () => {
        if (matchMedia('(min-width: 700px)').matches) document.getElementById('message').focus();
    };
    setupStatus();
    setupRoomsView({ room, onOpened: focusComposer });
    setupRoomView({ room, sender });
    setupMessages({ room, sender });
    setupDialogs({ api, room, onOpened: focusComposer });
    document.getElementById('sign-out').addEventListener('click', () => signOut());
}

//  Every CONNECTED: the watches are subscribed again already; send what
//  is queued, and after a reconnect catch up on what moved meanwhile
function online (session, { sender, room, rooms }) {
    state.connection = 'online';
    state.everOnline = true;
    changed('connection', 'room');
    sender.flush();
    if (session > 1) {
        rooms.refresh();
        room.resync();
    }
    room.maybeMarkRead();
}

function renderMe () {
    document.getElementById('me-name').textContent = state.me.name;
    document.getElementById('me-id').textContent = `@${state.me.id}`;
    avatar(document.getElementById('me-avatar'), state.me.name, state.me.id);
}

async function boot () {
    const message = sessionStorage.getItem(FLASH_KEY);
    sessionStorage.removeItem(FLASH_KEY);
    const fromUrl = takeTokenFromUrl();
    if (fromUrl && !decodeClaims(fromUrl)) return signInScreen('The sign-in link holds no valid token.');
    if (fromUrl) storeToken(fromUrl);
    const token = storedToken();
    const claims = token && decodeClaims(token);
    if (!claims) return signInScreen(message);
    if (!isExpired(claims)) return start(token);
    const fresh = await freshToken(claims);
    return fresh ? start(fresh) : signInScreen('Your session has expired. Sign in again.');
}

async function signInScreen (message) {
    showSignIn({ devMode: await devMode(), message, onToken: (token, { dev }) => {
        if (dev) auth.dev = Promise.resolve(true);
        start(token);
    } });
}

//  A sign-in link opened while the page is already open
window.addEventListener('hashchange', () => {
    if (/^#(?:.*&)?token=/.test(location.hash)) location.reload();
});

boot();
