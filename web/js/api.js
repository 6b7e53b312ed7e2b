//  The HTTP API (same origin, bearer token). Errors come back as ApiError
//  with the server's {"error": ...} text, ready to show.

export class ApiError extends Error {
    constructor (status, message) {
        super(message);
        this.status = status;
    }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

//  Retry-After is in seconds; without one wait a second. Bounded so a
//  confused header cannot freeze the page.
function retryDelay (response) {
    const seconds = Number(response.headers.get('retry-after'));
    return Math.min(Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 1000, 10000);
}

//  auth.token() gives the current token; auth.renew(reason) tries to
//  replace a refused one and says whether it did (else the app signs out).
export function createApi (auth) {
    async function request (method, path, body, attempt = 0, renewed = false) {
        let response;
        try {
            response = await fetch(path, {
                method,
                headers: { authorization: `Bearer ${auth.token()}`,
                    ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
                body: body === undefined ? undefined : JSON.stringify(body),
            });
        } catch {
            throw new ApiError(0, 'the server cannot be reached');
        }
        const json = await response.json().catch(() => null);
        if (response.status === 401 && !renewed && await auth.renew(json?.error))
            return request(method, path, body, attempt, true);
        //  Too many requests, or a store restarting: both say "try again"
        if ((response.status === 429 || response.status === 503) && attempt < 3) {
            await sleep(retryDelay(response));
            return request(method, path, body, attempt + 1, renewed);
        }
        if (!response.ok)
            throw new ApiError(response.status, json?.error ?? `request failed (HTTP ${response.status})`);
        return json;
    }

    const room = (id) => `/api/rooms/${encodeURIComponent(id)}`;
    return {
        rooms: () => request('GET', '/api/rooms'),
        room: (id) => request('GET', room(id)),
        //  Newest first, seq < before
        history: (id, before, limit = 50) => request('GET', `${room(id)}/messages?before=${before}&limit=${limit}`),
        createRoom: (body) => request('POST', '/api/rooms', body),
    };
}
