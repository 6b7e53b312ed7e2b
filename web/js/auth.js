//  Where the token comes from (the URL, localStorage, dev-mode sign-in by
//  name) and what it says. The server checks the signature; the page only
//  reads the claims to know who it is and when the token runs out.

const TOKEN_KEY = 'parley.token';

//  The payload of a JWT (base64url JSON), or null when it is not one
//  with a user id in `sub`.
export function decodeClaims (token) {
    const part = typeof token === 'string' ? token.split('.')[1] : undefined;
    if (!part) return null;
    try {
        const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
        const binary = atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '='));
        const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
        const claims = JSON.parse(new TextDecoder().decode(bytes));
        return typeof claims?.sub === 'string' && claims.sub ? claims : null;
    } catch {
        return null;
    }
}

//  Expired, or about to (a token that dies mid-connect only costs a
//  round trip more, so a small margin is enough)
export function isExpired (claims, marginS = 10) {
    return typeof claims.exp === 'number' && claims.exp * 1000 < Date.now() + marginS * 1000;
}

//  A token handed over in the link (/#token=...) wins over a stored one.
//  It is removed from the address bar at once so it is not bookmarked,
//  shared or left in the history.
export function takeTokenFromUrl () {
    const match = location.hash.match(/^#(?:.*&)?token=([^&]+)/);
    if (!match) return null;
    history.replaceState(null, '', location.pathname + location.search);
    try {
        return decodeURIComponent(match[1]);
    } catch {
        return null;
    }
}

export const storedToken = () => localStorage.getItem(TOKEN_KEY);
export const storeToken = (token) => localStorage.setItem(TOKEN_KEY, token);
export const forgetToken = () => localStorage.removeItem(TOKEN_KEY);

async function postDevToken (body) {
    return fetch('/api/dev/token', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
    });
}

//  The server says whether it is in dev mode only through the route
//  itself: an empty request is refused with 400 when it exists, 404 when
//  it does not.
export async function probeDevMode () {
    try {
        return (await postDevToken({})).status === 400;
    } catch {
        return false;
    }
}

//  A fresh dev-mode token for a user; throws with the server's reason
export async function mintDevToken (userId, name) {
    const response = await postDevToken({ userId, name });
    const json = await response.json().catch(() => null);
    if (!response.ok || typeof json?.token !== 'string')
        throw new Error(json?.error ?? `sign-in failed (HTTP ${response.status})`);
    return json.token;
}
