//  docs/openapi.yaml is what the server does: every documented operation
//  and status is provoked on a running host and its answer validated
//  against the documented schema; every method and path the server answers
//  is documented; the routes of actors/connection/pl_api.c (read as text)
//  are the documented ones. A route, status or field added on one side
//  only fails here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { parse } from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { Host, sendWithReceipt } from './harness.mjs';

const top = new URL('../../', import.meta.url);
const spec = parse(readFileSync(new URL('docs/openapi.yaml', top), 'utf8'));
const apiSource = readFileSync(new URL('actors/connection/pl_api.c', top), 'utf8');

//  --------------------------------------------------------------------------
//  The spec: operations, responses, schemas

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const refusals = spec['x-parley-method-refusals'];

const operations = [];
for (const [path, item] of Object.entries(spec.paths))
    for (const method of HTTP_METHODS)
        if (item[method]) operations.push({ method: method.toUpperCase(), path, op: item[method] });

//  The methods a path lists (OPTIONS among them)
const methodsOf = (path) => HTTP_METHODS.filter((method) => spec.paths[path][method]).map((m) => m.toUpperCase());

//  Follow '#/...' references inside the spec
function deref (node) {
    const seen = new Set();
    while (node && typeof node.$ref === 'string') {
        assert.ok(node.$ref.startsWith('#/'), `only local references: ${node.$ref}`);
        assert.ok(!seen.has(node.$ref), `reference loop at ${node.$ref}`);
        seen.add(node.$ref);
        node = node.$ref.slice(2).split('/')
            .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
            .reduce((at, key) => at?.[key], spec);
        assert.ok(node !== undefined, `unresolved reference ${[...seen].pop()}`);
    }
    return node;
}

//  Schemas: components/schemas as one JSON Schema 2020-12 document; the
//  schemas of responses refer to it by absolute references
const SPEC_ID = 'https://parley.invalid/openapi.yaml';
function absolute (node) {
    if (Array.isArray(node)) return node.map(absolute);
    if (node && typeof node === 'object') {
        const copy = {};
        for (const [key, value] of Object.entries(node))
            copy[key] = key === '$ref' && typeof value === 'string' && value.startsWith('#/components/schemas/')
                ? `${SPEC_ID}#/$defs/${value.slice('#/components/schemas/'.length)}`
                : absolute(value);
        return copy;
    }
    return node;
}
const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
addFormats(ajv);
ajv.addSchema({ $id: SPEC_ID, $defs: absolute(spec.components.schemas) });
const compiled = new Map();
function validator (schema) {
    if (!compiled.has(schema)) compiled.set(schema, ajv.compile(absolute(schema)));
    return compiled.get(schema);
}
function assertValid (schema, value, what) {
    const validate = validator(schema);
    assert.ok(validate(value), `${what} does not match the spec: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value)}`);
}

//  The documented response of method on a path template for status: the
//  operation's, or a method refusal's for a method the path does not list
function responseOf (method, template, status) {
    const op = spec.paths[template]?.[method.toLowerCase()];
    if (op) return op.responses[String(status)] && deref(op.responses[String(status)]);
    for (const refusal of [refusals.notAllowed, refusals.notImplemented])
        if (refusal.methods.includes(method) && refusal.status === status) return deref(refusal.response);
    return undefined;
}

//  Which path template a concrete path is (empty segments do not count,
//  as the spec says), or undefined
function templateOf (path) {
    const segments = path.split('/').filter(Boolean);
    return Object.keys(spec.paths).find((template) => {
        const parts = template.split('/').filter(Boolean);
        return parts.length === segments.length
            && parts.every((part, i) => /^\{.+\}$/.test(part) || part === segments[i]);
    });
}

//  Method, template and status of every answer checked
const covered = new Set();

//  An answer: the status expected, documented for this method and path, its
//  media type and body and headers as documented
function check (answer, method, path, status, what = `${method} ${path}`) {
    assert.equal(answer.status, status, `${what}: ${answer.status} ${answer.text}`);
    const template = templateOf(path);
    assert.ok(template, `${what}: ${path} is not a documented path`);
    const response = responseOf(method, template, status);
    assert.ok(response, `${what}: ${status} is not documented for ${method} ${template}`);
    //  Every answer closes and allows any origin (info.description)
    assert.equal(answer.headers.connection, 'close', `${what}: connection`);
    assert.equal(answer.headers['access-control-allow-origin'], '*', `${what}: access-control-allow-origin`);
    if (method !== 'HEAD') {
        if (response.content) {
            const type = answer.headers['content-type'];
            const media = Object.keys(response.content).find((key) => key.replace(/\s/g, '') === type?.replace(/\s/g, ''));
            assert.ok(media, `${what}: content-type ${type} is not documented (${Object.keys(response.content)})`);
            const body = media.startsWith('application/json') ? JSON.parse(answer.text) : answer.text;
            assertValid(response.content[media].schema, body, `${what}: the ${status} body`);
        }
        else
            assert.equal(answer.text, '', `${what}: a ${status} without body`);
    }
    for (const [name, header] of Object.entries(response.headers ?? {})) {
        const { schema, required } = deref(header);
        const value = answer.headers[name.toLowerCase()];
        if (required) assert.ok(value !== undefined, `${what}: header ${name} missing`);
        if (value !== undefined)
            assertValid(schema, schema.type === 'integer' && /^\d+$/.test(value) ? Number(value) : value, `${what}: header ${name}`);
    }
    covered.add(`${method} ${template} ${status}`);
    return answer;
}

//  --------------------------------------------------------------------------
//  Raw HTTP/1.1: every byte as the test means it (methods fetch refuses,
//  bodies without their length, malformed heads); the server closes each
//  connection after its answer

function request (port, method, target, { token, headers = {}, body, head, timeoutMs = 15000 } = {}) {
    let text = head;
    if (text === undefined) {
        const all = { host: `127.0.0.1:${port}`, ...headers };
        if (token) all.authorization = `Bearer ${token}`;
        if (body !== undefined) {
            all['content-type'] ??= 'application/json';
            all['content-length'] ??= String(Buffer.byteLength(body));
        }
        text = [`${method} ${target} HTTP/1.1`, ...Object.entries(all).map(([k, v]) => `${k}: ${v}`)].join('\r\n')
            + '\r\n\r\n' + (body ?? '');
    }
    return new Promise((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        const chunks = [];
        const timer = setTimeout(() => { socket.destroy(); reject(new Error(`${method} ${target}: no answer`)); }, timeoutMs);
        const done = () => {
            clearTimeout(timer);
            const data = Buffer.concat(chunks).toString('utf8');
            const end = data.indexOf('\r\n\r\n');
            const status = /^HTTP\/1\.[01] (\d{3}) /.exec(data);
            if (end < 0 || !status) { reject(new Error(`${method} ${target}: not an HTTP answer: ${JSON.stringify(data)}`)); return; }
            const answerHeaders = {};
            for (const line of data.slice(0, end).split('\r\n').slice(1)) {
                const colon = line.indexOf(':');
                answerHeaders[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
            }
            resolve({ status: Number(status[1]), headers: answerHeaders, text: data.slice(end + 4) });
        };
        socket.on('data', (data) => chunks.push(data));
        socket.on('close', done);
        socket.on('error', () => { if (!chunks.length) { clearTimeout(timer); reject(new Error(`${method} ${target}: connection failed`)); } });
        socket.write(text);
    });
}

//  --------------------------------------------------------------------------
//  Hosts and the rooms the tests use

let host;           //  no HTTP rate limit, max-rooms-per-user 3, dev-mode
let limited;        //  http-rate 1, http-burst 1: the second request of a user is a 429; dev-mode
const tokens = {};
let group;          //  alice's group with bob
let direct;         //  alice and bob
const NO_ROOM = 'g:000000000000000000000000';

//  A concrete path of a template: the group, a user who is not a member
const concrete = (template, { id = group.id, userId = 'nobody' } = {}) =>
    template.replace('{id}', id).replace('{userId}', userId);

const call = (method, path, options = {}) => request(host.port, method, path, options);

before(async () => {
    [host, limited] = await Promise.all([
        new Host({ extra: ['--http-rate', '0', '--max-rooms-per-user', '3', '--dev-mode', '1'] }).up(),
        new Host({ extra: ['--http-rate', '1', '--http-burst', '1', '--dev-mode', '1'] }).up(),
    ]);
    for (const user of ['alice', 'bob', 'carol', 'mallory', 'quinn'])
        tokens[user] = host.token(user, user[0].toUpperCase() + user.slice(1));
});
after(async () => {
    await host?.down();
    await limited?.down();
});

test('the spec is OpenAPI 3.1; its references resolve and its schemas compile', () => {
    assert.match(spec.openapi, /^3\.1\./);
    const walk = (node) => {
        if (Array.isArray(node)) node.forEach(walk);
        else if (node && typeof node === 'object') {
            if (typeof node.$ref === 'string') deref(node);
            Object.values(node).forEach(walk);
        }
    };
    walk(spec);
    for (const name of Object.keys(spec.components.schemas))
        assert.ok(ajv.getSchema(`${SPEC_ID}#/$defs/${name}`), `schema ${name} compiles`);
    assert.ok(spec.components.securitySchemes.bearerAuth.scheme === 'bearer');
    for (const { method, path, op } of operations) {
        assert.ok(op['x-parley-kind'], `${method} ${path}: x-parley-kind`);
        for (const [status, response] of Object.entries(op.responses)) {
            assert.match(status, /^[1-5]\d\d$/, `${method} ${path}: status ${status}`);
            for (const media of Object.values(deref(response).content ?? {})) validator(media.schema);
        }
        for (const name of path.matchAll(/\{(\w+)\}/g))
            assert.ok([...(spec.paths[path].parameters ?? []), ...(op.parameters ?? [])]
                .some((p) => deref(p).in === 'path' && deref(p).name === name[1]), `${method} ${path}: parameter ${name[1]}`);
    }
});

//  --------------------------------------------------------------------------
//  The route table of pl_api.c, read as text: s_match_path's locals (path,
//  method, target), the prefix it hands to s_match_rooms, and in s_match_rooms
//  one branch per assignment of *kind_p: its count of segments, the fixed
//  words it compares, the methods of its *allowed_p; segments copied into
//  route->room and route->sub are the path's parameters.

const PATH_PARAMETERS = { room: 'id', sub: 'userId' };

function functionText (name) {
    const start = apiSource.search(new RegExp(`^${name} \\(`, 'm'));
    assert.ok(start >= 0, `pl_api.c has no function ${name}: update this parser`);
    return apiSource.slice(start, apiSource.indexOf('\n}\n', start));
}

function sourceRoutes () {
    const routes = [];
    const matchPath = functionText('s_match_path');
    //  Its locals: { "<path>", "<method>", PL_API_<KIND>, <dev_only> }
    const locals = [...matchPath.matchAll(/\{\s*"(\/[^"]*)"\s*,\s*"([A-Z]+)"\s*,\s*PL_API_(\w+)\s*,\s*(?:true|false)\s*\}/g)];
    assert.ok(locals.length >= 4, 's_match_path: its table of locals: update this parser');
    for (const [, path, method, target] of locals)
        routes.push({ method, path, kind: target.toLowerCase() });
    const prefix = /if \(([^\n]*)\)\s*\n\s*return s_match_rooms/.exec(matchPath);
    assert.ok(prefix, 's_match_path: the condition before s_match_rooms');
    const fixed = new Map([...prefix[1].matchAll(/segments \[(\d+)\],\s*"([^"]+)"/g)].map((m) => [Number(m[1]), m[2]]));
    const rooms = functionText('s_match_rooms');
    const variables = new Map([...rooms.matchAll(/strcpy \(route->(\w+), segments \[(\d+)\]\)/g)]
        .map((m) => [Number(m[2]), m[1]]));
    let from = 0;
    for (const assignment of rooms.matchAll(/\*kind_p\s*=\s*([^;]+);/g)) {
        const branch = rooms.slice(from, assignment.index + assignment[0].length);
        from = assignment.index + assignment[0].length;
        const count = Number([...branch.matchAll(/count == (\d+)/g)].at(-1)?.[1]);
        assert.ok(count > 0, `s_match_rooms: no segment count before ${assignment[0]}`);
        const words = new Map(fixed);
        for (const word of branch.matchAll(/segments \[(\d+)\],\s*"([^"]+)"/g)) words.set(Number(word[1]), word[2]);
        const allowed = /\*allowed_p\s*=\s*([^,;]+)[,;]/.exec(branch);
        assert.ok(allowed, `s_match_rooms: no *allowed_p before ${assignment[0]}`);
        const methods = [...allowed[1].matchAll(/"([A-Z]+)"/g)].map((m) => m[1]);
        const kinds = [...assignment[1].matchAll(/"([a-z.]+)"/g)].map((m) => m[1]);
        assert.equal(methods.length, kinds.length, `s_match_rooms: methods ${methods} and kinds ${kinds}`);
        const segments = [];
        for (let index = 0; index < count; index++) {
            if (words.has(index)) segments.push(words.get(index));
            else {
                const field = variables.get(index);
                assert.ok(PATH_PARAMETERS[field], `s_match_rooms: segment ${index} of ${kinds} (route->${field}) has no name here`);
                segments.push(`{${PATH_PARAMETERS[field]}}`);
            }
        }
        methods.forEach((method, i) => routes.push({ method, path: `/${segments.join('/')}`, kind: kinds[i] }));
    }
    return routes;
}

test('the routes of pl_api.c are the documented paths, methods and operations', () => {
    const routes = sourceRoutes();
    assert.ok(routes.length >= 9, `the parser found only ${routes.length} routes in pl_api.c: update it`);
    const fromSource = routes.map((r) => `${r.method} ${r.path} ${r.kind}`).sort();
    const documented = operations.filter(({ method }) => method !== 'OPTIONS')
        .map(({ method, path, op }) => `${method} ${path} ${op['x-parley-kind']}`).sort();
    assert.deepEqual(documented, fromSource, 'docs/openapi.yaml and pl_api.c name other routes');
    assert.deepEqual(Object.keys(spec.paths).sort(), [...new Set(routes.map((r) => r.path))].sort());
    //  OPTIONS on any path it knows: a preflight
    assert.match(functionText('pl_api_route'), /streq \(method, "OPTIONS"\)\)\s*\{\s*route->target = PL_API_PREFLIGHT/);
    for (const path of Object.keys(spec.paths))
        assert.equal(spec.paths[path].options?.['x-parley-kind'], 'preflight', `OPTIONS ${path} documented`);
});

test('the query parameters of pl_api.c are the documented ones', () => {
    //  The table s_params: { "<operation>", "<name>", FLAG }
    const table = /s_params \[\] = \{([\s\S]*?)\};/.exec(apiSource);
    const params = table ? [...table[1].matchAll(/\{ "([a-z.]+)", "(\w+)", \w+ \}/g)].map((m) => [m[1], m[2]]) : [];
    assert.ok(params.length, 'pl_api.c: the query parameter table s_params: update this parser');
    for (const { method, path, op } of operations) {
        const documented = (op.parameters ?? []).map(deref).filter((p) => p.in === 'query').map((p) => p.name).sort();
        const taken = params.filter(([kind]) => kind === op['x-parley-kind']).map(([, name]) => name).sort();
        assert.deepEqual(documented, taken, `${method} ${path}`);
    }
});

//  --------------------------------------------------------------------------
//  Answers

//  A request body that the spec's request schema must accept
function requestBody (method, template, value) {
    const schema = spec.paths[template][method.toLowerCase()].requestBody.content['application/json'].schema;
    assertValid(schema, value, `the ${method} ${template} request`);
    return JSON.stringify(value);
}

test('every operation answers its success statuses as documented', async () => {
    const created = check(await call('POST', '/api/rooms', { token: tokens.alice,
        body: requestBody('POST', '/api/rooms', { kind: 'group', name: 'Team', members: ['bob'] }) }), 'POST', '/api/rooms', 201);
    group = JSON.parse(created.text);
    assert.deepEqual(group.members, ['alice', 'bob']);
    direct = JSON.parse(check(await call('POST', '/api/rooms', { token: tokens.alice,
        body: requestBody('POST', '/api/rooms', { kind: 'direct', members: ['bob'] }) }), 'POST', '/api/rooms', 201).text);
    const again = check(await call('POST', '/api/rooms', { token: tokens.bob,
        body: requestBody('POST', '/api/rooms', { kind: 'direct', members: ['alice'], name: null }) }), 'POST', '/api/rooms', 200);
    assert.equal(JSON.parse(again.text).id, direct.id);

    //  Two stored messages, one without clientMsgId
    const client = await host.stomp(tokens.alice);
    await sendWithReceipt(client, group.id, 'hello', 'cid-1');
    await sendWithReceipt(client, group.id, 'again', null);
    await client.deactivate();
    let page;
    for (let tries = 0; tries < 300; tries++) {
        page = check(await call('GET', `/api/rooms/${group.id}/messages`, { token: tokens.alice }),
            'GET', `/api/rooms/${group.id}/messages`, 200);
        if (JSON.parse(page.text).length === 2) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const messages = JSON.parse(page.text);
    assert.deepEqual(messages.map((m) => [m.seq, m.content, m.clientMsgId]), [[2, 'again', undefined], [1, 'hello', 'cid-1']]);
    const older = check(await call('GET', `/api/rooms/${group.id}/messages?before=2&limit=5`, { token: tokens.alice }),
        'GET', `/api/rooms/${group.id}/messages`, 200);
    assert.deepEqual(JSON.parse(older.text).map((m) => m.seq), [1]);

    const list = JSON.parse(check(await call('GET', '/api/rooms', { token: tokens.alice }), 'GET', '/api/rooms', 200).text);
    assert.deepEqual(list.map((r) => r.id).sort(), [group.id, direct.id].sort());
    assert.equal(list.find((r) => r.id === group.id).lastSeq, 2);
    const detail = JSON.parse(check(await call('GET', `/api/rooms/${group.id}`, { token: tokens.bob }),
        'GET', `/api/rooms/${group.id}`, 200).text);
    assert.deepEqual(Object.keys(detail.readSeq).sort(), ['alice', 'bob']);

    const members = `/api/rooms/${group.id}/members`;
    const addCarol = () => requestBody('POST', '/api/rooms/{id}/members', { userId: 'carol' });
    check(await call('POST', members, { token: tokens.bob, body: addCarol() }), 'POST', members, 200);
    const twice = check(await call('POST', members, { token: tokens.bob, body: addCarol() }), 'POST', members, 200);
    assert.deepEqual(JSON.parse(twice.text).members, ['alice', 'bob', 'carol']);
    const removed = check(await call('DELETE', `${members}/carol`, { token: tokens.carol }), 'DELETE', `${members}/carol`, 200);
    assert.deepEqual(JSON.parse(removed.text).members, ['alice', 'bob']);

    const dev = JSON.parse(check(await call('POST', '/api/dev/token',
        { body: requestBody('POST', '/api/dev/token', { userId: 'dave', name: 'Dave' }) }), 'POST', '/api/dev/token', 200).text);
    assert.equal((await call('GET', '/api/rooms', { token: dev.token })).status, 200);
    check(await call('GET', '/healthz'), 'GET', '/healthz', 200);
    check(await call('GET', '/readyz'), 'GET', '/readyz', 200);
    const metrics = check(await call('GET', '/metrics'), 'GET', '/metrics', 200);
    assert.match(metrics.text, /_total/);
    for (const template of Object.keys(spec.paths))
        check(await call('OPTIONS', concrete(template), { headers: { origin: 'http://example.org' } }), 'OPTIONS', concrete(template), 204);
});

test('400: ids, query parameters and bodies the server refuses', async () => {
    const alice = tokens.alice;
    for (const path of ['/api/rooms', '/healthz', '/readyz', '/metrics'])
        check(await call('GET', `${path}?x=1`, { token: alice }), 'GET', path, 400);
    for (const body of ['not json', '[1]', '{"kind":"channel","members":[]}', '{"kind":"group","name":"","members":[]}',
        '{"kind":"direct","members":["bob","carol"]}', '{"kind":"direct","name":"x","members":["bob"]}',
        '{"kind":"group","name":"x","members":["a b"]}'])
        check(await call('POST', '/api/rooms', { token: alice, body }), 'POST', '/api/rooms', 400, `POST /api/rooms ${body}`);
    for (const id of ['a!b', 'x'.repeat(65)]) {
        for (const template of ['/api/rooms/{id}', '/api/rooms/{id}/messages'])
            check(await call('GET', concrete(template, { id }), { token: alice }), 'GET', concrete(template, { id }), 400);
        check(await call('POST', concrete('/api/rooms/{id}/members', { id }), { token: alice, body: '{"userId":"carol"}' }),
            'POST', concrete('/api/rooms/{id}/members', { id }), 400);
        check(await call('DELETE', concrete('/api/rooms/{id}/members/{userId}', { id }), { token: alice }),
            'DELETE', concrete('/api/rooms/{id}/members/{userId}', { id }), 400);
        check(await call('OPTIONS', concrete('/api/rooms/{id}', { id })), 'OPTIONS', concrete('/api/rooms/{id}', { id }), 400);
    }
    for (const query of ['limit=0', 'after=a!b', 'after', 'limit=1&limit=2', 'after=g:notyours', 'before=1'])
        check(await call('GET', `/api/rooms?${query}`, { token: alice }), 'GET', '/api/rooms', 400, `GET /api/rooms?${query}`);
    const messages = `/api/rooms/${group.id}/messages`;
    for (const query of ['limit=0', 'limit=abc', 'limit', 'before=-1', 'limit=5&limit=6', 'x=1', 'before=99999999999999999999'])
        check(await call('GET', `${messages}?${query}`, { token: alice }), 'GET', messages, 400, `GET ${messages}?${query}`);
    const members = `/api/rooms/${group.id}/members`;
    for (const body of ['not json', '{}', '{"userId":"a b"}'])
        check(await call('POST', members, { token: alice, body }), 'POST', members, 400, `POST ${members} ${body}`);
    check(await call('POST', `/api/rooms/${direct.id}/members`, { token: alice, body: '{"userId":"carol"}' }),
        'POST', `/api/rooms/${direct.id}/members`, 400);
    check(await call('DELETE', `/api/rooms/${group.id}/members/a!b`, { token: alice }), 'DELETE', `/api/rooms/${group.id}/members/a!b`, 400);
    check(await call('DELETE', `/api/rooms/${direct.id}/members/bob`, { token: alice }), 'DELETE', `/api/rooms/${direct.id}/members/bob`, 400);
    for (const body of ['not json', '[1]', '{}', '{"userId":"a b"}', '{"userId":"x","name":""}', '{"userId":"x","name":"a\\u0007b"}'])
        check(await call('POST', '/api/dev/token', { body }), 'POST', '/api/dev/token', 400, `POST /api/dev/token ${body}`);
});

test('401: no token, a bad one, an expired one', async () => {
    const expired = host.forgeToken({ sub: 'alice', name: 'Alice', exp: Math.floor(Date.now() / 1000) - 3600 });
    for (const { method, path, op } of operations.filter(({ op }) => op.responses['401'])) {
        const target = concrete(path);
        const body = method === 'POST' ? '{}' : undefined;
        check(await call(method, target, { body }), method, target, 401);
        check(await call(method, target, { body, token: 'not-a-token' }), method, target, 401);
        check(await call(method, target, { body, token: expired }), method, target, 401);
        check(await call(method, target, { body, headers: { authorization: 'Basic YWxpY2U6eA==' } }), method, target, 401);
        assert.ok(op.security === undefined, `${method} ${path} answers 401, so it needs the bearer token`);
    }
    for (const { method, path, op } of operations.filter(({ op }) => !op.responses['401']))
        assert.deepEqual(op.security, [], `${method} ${path} never answers 401, so it needs no token`);
});

test('403 and 404: non-members, rooms that do not exist, members that are not', async () => {
    const { mallory, alice, bob } = tokens;
    for (const id of [group.id, NO_ROOM]) {
        for (const template of ['/api/rooms/{id}', '/api/rooms/{id}/messages'])
            check(await call('GET', concrete(template, { id }), { token: mallory }), 'GET', concrete(template, { id }), 403);
        check(await call('POST', `/api/rooms/${id}/members`, { token: mallory, body: '{"userId":"mallory"}' }),
            'POST', `/api/rooms/${id}/members`, 403);
        check(await call('DELETE', `/api/rooms/${id}/members/mallory`, { token: mallory }), 'DELETE', `/api/rooms/${id}/members/mallory`, 403);
    }
    //  The same message for a room that exists and one that does not
    const a = await call('GET', `/api/rooms/${NO_ROOM}`, { token: alice });
    assert.deepEqual(JSON.parse(a.text), { error: `not a member of room ${NO_ROOM}` });
    //  Only the creator removes others
    check(await call('DELETE', `/api/rooms/${group.id}/members/alice`, { token: bob }), 'DELETE', `/api/rooms/${group.id}/members/alice`, 403);
    check(await call('DELETE', `/api/rooms/${group.id}/members/nobody`, { token: alice }), 'DELETE', `/api/rooms/${group.id}/members/nobody`, 404);
});

test('429: max-rooms-per-user, for the creator and for an added member', async () => {
    const { quinn, alice } = tokens;
    for (let index = 0; index < 3; index++)
        check(await call('POST', '/api/rooms', { token: quinn, body: JSON.stringify({ kind: 'group', name: `q${index}`, members: [] }) }),
            'POST', '/api/rooms', 201);
    const refused = check(await call('POST', '/api/rooms', { token: quinn, body: '{"kind":"group","name":"q3","members":[]}' }),
        'POST', '/api/rooms', 429);
    assert.match(JSON.parse(refused.text).error, /max-rooms-per-user/);
    assert.equal(refused.headers['retry-after'], undefined);
    const members = `/api/rooms/${group.id}/members`;
    check(await call('POST', members, { token: alice, body: '{"userId":"quinn"}' }), 'POST', members, 429);
});

test('429: the HTTP rate limit, on every operation, with Retry-After', async () => {
    let index = 0;
    for (const { method, path } of operations) {
        const token = limited.token(`rate-${index++}`);
        const target = concrete(path, { id: NO_ROOM });
        const body = method === 'POST' ? '{}' : undefined;
        //  The first takes the one token; the next within a second is refused
        let answer;
        for (let tries = 0; tries < 5 && answer?.status !== 429; tries++)
            answer = await request(limited.port, method, target, { token, body });
        check(answer, method, target, 429);
        assert.ok(Number(answer.headers['retry-after']) >= 1, `${method} ${path}: Retry-After`);
        assert.match(JSON.parse(answer.text).error, /http-rate/);
    }
});

test('refused before routing on every operation: 400, 411, 413, 414 and 431', async () => {
    for (const { method, path, op } of operations) {
        const target = concrete(path);
        const line = (rest) => `${method} ${target} HTTP/1.1\r\nHost: x\r\n${rest}\r\n`;
        const cases = [
            [400, line('a header line without colon\r\n')],
            [400, line('Content-Length: 1x\r\n')],
            [411, line('Transfer-Encoding: chunked\r\n') + '0\r\n\r\n'],
            [413, line('Content-Length: 99999\r\n')],
            [414, `${method} ${target}?q=${'a'.repeat(5000)} HTTP/1.1\r\nHost: x\r\n\r\n`],
            [431, line(`X-Filler: ${'a'.repeat(40000)}\r\n`)],
            [431, line(`Authorization: Bearer ${'a'.repeat(20000)}\r\n`)],
        ];
        for (const [status, head] of cases) {
            assert.ok(op.responses[String(status)], `${method} ${path} documents ${status}`);
            check(await request(host.port, method, target, { head }), method, target, status, `${method} ${path} (${status})`);
        }
    }
});

test('405 for a method a path does not list, without Allow; 501 for CONNECT and TRACE', async () => {
    for (const path of Object.keys(spec.paths)) {
        const target = concrete(path);
        const listed = methodsOf(path);
        for (const method of refusals.notAllowed.methods.filter((m) => !listed.includes(m))) {
            const answer = check(await call(method, target, { token: tokens.alice, body: method === 'GET' || method === 'HEAD' ? undefined : '{}' }),
                method, target, 405);
            if (answer.headers.allow !== undefined)
                assert.deepEqual(answer.headers.allow.split(',').map((m) => m.trim()).sort(), [...listed].sort(), `${method} ${path}: Allow`);
        }
        for (const method of refusals.notImplemented.methods)
            check(await call(method, target), method, target, 501);
    }
    //  Not a method at all, another HTTP version: refused on any path
    assert.equal((await request(host.port, 'BREW', '/healthz', { head: 'BREW /healthz HTTP/1.1\r\n\r\n' })).status, 501);
    assert.equal((await request(host.port, 'GET', '/healthz', { head: 'GET /healthz HTTP/2.0\r\n\r\n' })).status, 505);
});

test('every method and path the server answers is documented', async () => {
    const g = group.id;
    const paths = [
        ...Object.keys(spec.paths).map((template) => concrete(template)),
        '/api/rooms/', '//api//rooms/', `/api/rooms/${g}/`, '/healthz/',
        '/', '/index.html', '/favicon.ico', '/ws', '/api', '/api/', '/api/dev/token', '/api/token', '/api/login',
        '/api/users', '/api/users/alice', '/api/me', '/api/room', '/api/v1/rooms', `/api/rooms/${g}/read`,
        `/api/rooms/${g}/typing`, `/api/rooms/${g}/presence`, `/api/rooms/${g}/online`, `/api/rooms/${g}/messages/1`,
        `/api/rooms/${g}/members/nobody/x`, `/api/rooms/${g}/x/y`, `/api/rooms/${g}/a/b/c/d`, '/health', '/ready',
        '/livez', '/status', '/metrics/x', '/openapi.yaml', '/docs',
    ];
    const methods = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
    for (const path of paths)
        for (const method of methods) {
            const answer = await call(method, path, { token: tokens.alice, body: ['POST', 'PUT', 'PATCH'].includes(method) ? '{}' : undefined });
            const template = templateOf(path);
            //  Off the API's paths: the web chat's files (info.description),
            //  GET only; index.html is there, the others are not
            if (!template && !/^\/+(api|ws|healthz|readyz|metrics)(\/|$)/.test(path)) {
                const found = ['/', '/index.html'].includes(path);
                assert.equal(answer.status, method !== 'GET' ? 405 : found ? 200 : 404, `${method} ${path}: ${answer.status} ${answer.text}`);
                assert.equal(answer.headers.connection, 'close', `${method} ${path}: connection`);
                if (method !== 'GET') assert.equal(answer.headers.allow, 'GET', `${method} ${path}: allow`);
                if (answer.status !== 200) assert.ok(JSON.parse(answer.text).error, `${method} ${path}: a JSON error`);
                continue;
            }
            if (!template) {
                assert.equal(answer.status, 404, `${method} ${path} answers ${answer.status} ${answer.text} but is not documented`);
                if (method !== 'HEAD') assert.deepEqual(JSON.parse(answer.text), { error: 'not found' });
                continue;
            }
            //  A documented path: the status must be documented for the method
            check(answer, method, path, answer.status);
            if (answer.status === 405 && answer.headers.allow !== undefined)
                assert.deepEqual(answer.headers.allow.split(',').map((m) => m.trim()).sort(), methodsOf(template).sort());
        }
});

test('503: no persistence actor', async () => {
    await host.kill('store-0');
    let answer;
    for (let tries = 0; tries < 300; tries++) {
        answer = await call('GET', '/readyz');
        if (answer.status === 503) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
    check(answer, 'GET', '/readyz', 503);
    for (const { method, path, op } of operations.filter(({ op }) => op.responses['503'] && op['x-parley-kind'].includes('.'))) {
        const target = concrete(path, { userId: 'bob' });
        const body = method === 'POST' ? requestBody(method, path, path === '/api/rooms'
            ? { kind: 'group', name: 'x', members: [] } : { userId: 'carol' }) : undefined;
        check(await call(method, target, { token: tokens.alice, body, timeoutMs: 30000 }), method, target, 503);
    }
});

test('every documented status was provoked', () => {
    const documented = [];
    for (const { method, path, op } of operations)
        for (const status of Object.keys(op.responses)) documented.push(`${method} ${path} ${status}`);
    for (const path of Object.keys(spec.paths)) {
        for (const method of refusals.notAllowed.methods.filter((m) => !methodsOf(path).includes(m)))
            documented.push(`${method} ${path} ${refusals.notAllowed.status}`);
        for (const method of refusals.notImplemented.methods)
            documented.push(`${method} ${path} ${refusals.notImplemented.status}`);
    }
    const missing = documented.filter((entry) => !covered.has(entry));
    assert.deepEqual(missing, [], 'documented but never provoked');
});
