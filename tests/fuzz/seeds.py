#!/usr/bin/env python3
#   seeds.py - writes the seed corpora of the fuzz targets into
#   tests/fuzz/corpus/<target>/: a few valid inputs of each kind, in each
#   target's input layout (see the banner of tests/fuzz/fuzz_<target>.c),
#   so the fuzzer starts from what clients really send.
#   Run it again after changing a layout; it replaces the seeds it wrote.
import base64
import hashlib
import hmac
import json
import os
import struct

top = os.path.dirname(os.path.abspath(__file__))

#   fuzz_token.c signs and verifies with this secret
SECRET = b"parley-fuzz-secret-0123456789abcdef"
EXP = 4102444800            # 2100-01-01: the seeds stay valid


def write(target, name, data):
    folder = os.path.join(top, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as out:
        out.write(data)


#   STOMP: byte 0 = version (0: 1.0, 1: 1.1, 2: 1.2) | frame limit << 2
#   (3: 64 KiB) | header limit << 4 (3: 64) | stop-at frame << 6; byte 1 =
#   number of split points, two bytes each, then the stream.
def stomp(name, stream, version=2, frame_limit=3, header_limit=3, stop_at=0, cuts=()):
    config = version | frame_limit << 2 | header_limit << 4 | stop_at << 6
    head = bytes([config, len(cuts)]) + b"".join(struct.pack(">H", c) for c in cuts)
    write("stomp", name, head + stream)


def stomp_seeds():
    connect = (b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:parley\n"
               b"Authorization:Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig\nheart-beat:10000,10000\n\n\0")
    subscribe = b"SUBSCRIBE\nid:sub-0\ndestination:/topic/rooms/r1\nsince-seq:42\nreceipt:r-1\n\n\0"
    body = b'{"type":"TALK","content":"hi\\u0000","clientMsgId":"c-1"}'
    send = (b"SEND\ndestination:/app/rooms/r1\ncontent-type:application/json\ncontent-length:%d\n\n"
            % len(body) + body + b"\0\n")
    stomp("connect", connect)
    stomp("connect-crlf", connect.replace(b"\n", b"\r\n").replace(b"\r\n\0", b"\0"))
    stomp("subscribe", subscribe)
    stomp("send-content-length", send)
    stomp("send-nul-in-body", b"SEND\ndestination:/app/rooms/r1\ncontent-length:5\n\na\0b\0c\0")
    stomp("send-to-nul", b'SEND\ndestination:/app/rooms/r1\n\n{"type":"TALK","content":"x"}\0')
    stomp("session-split", connect + b"\n\r\n" + subscribe + b"\n" + send
          + b"UNSUBSCRIBE\nid:sub-0\n\n\0DISCONNECT\nreceipt:bye\n\n\0", cuts=(3, 40, 41, 200, 260))
    stomp("escapes-12", b"SEND\ndestination:/a\\cb\nx\\n\\r\\\\y:v\\c\\n\\r\\\\\n\n\0")
    stomp("escapes-11", b"SEND\ndestination:/a\\cb\nx\\ny:v\\c\\\\\n\n\0", version=1)
    stomp("plain-10", b"SEND\ndestination:/a:b\\c\nkey:a:b:c\n\nbody\0", version=0)
    stomp("repeated-header", b"SEND\ndestination:/first\ndestination:/second\n\n\0")
    stomp("stop-after-first", b"BEGIN\ntransaction:t1\n\n\0ACK\nid:1\n\n\0NACK\nid:2\n\n\0"
          b"COMMIT\ntransaction:t1\n\n\0ABORT\ntransaction:t2\n\n\0", stop_at=1)
    stomp("stomp-command", b"STOMP\naccept-version:1.2\nhost:h\nlogin:a\\b\n\n\0")
    stomp("small-limits", b"SEND\na:1\nb:2\nc:3\n\n\0", frame_limit=0, header_limit=1)
    stomp("unknown-command", b"HELLO\n\n\0")
    stomp("bad-escape", b"SEND\nx:\\t\n\n\0")
    stomp("heartbeats", b"\n\n\r\n\n")


#   HTTP API: byte 0 = history-limit (2: 200), then METHOD\nPATH\nQUERY\n
#   and the body; no third line: no query string.
#   byte 0: bits 0-1 the history limit's index, bit 2 dev-mode
def api(name, method, path, query=None, body=b"", limit=2):
    data = bytes([limit]) + method + b"\n" + path + b"\n"
    if query is not None:
        data += query + b"\n" + body
    write("api", name, data)


def api_seeds():
    api("healthz", b"GET", b"/healthz")
    api("readyz", b"GET", b"/readyz")
    api("metrics", b"GET", b"/metrics", b"")
    api("rooms-list", b"GET", b"/api/rooms", b"")
    api("rooms-create", b"POST", b"/api/rooms", b"",
        b'{"kind":"direct","members":["bob"]}')
    api("room-get", b"GET", b"/api/rooms/r1", b"")
    api("room-messages", b"GET", b"/api/rooms/r1/messages", b"before=120&limit=50")
    api("room-messages-big", b"GET", b"/api/rooms/room-2/messages/", b"limit=999999&x=1&before=", limit=3)
    api("member-add", b"POST", b"/api/rooms/r1/members", b"", b'{"userId":"bob"}')
    api("member-remove", b"DELETE", b"/api/rooms/r1/members/bob", b"")
    api("preflight", b"OPTIONS", b"/api/rooms/r1/messages", b"")
    api("not-allowed", b"PUT", b"//api//rooms//r1", b"")
    api("not-found", b"GET", b"/api/rooms/r1/members/bob/x/y/z", b"")
    #   Byte 0, bit 2: dev-mode (POST /api/dev/token exists)
    api("dev-token", b"POST", b"/api/dev/token", b"", b'{"userId":"alice"}', limit=6)
    api("dev-token-off", b"POST", b"//api/dev/token/", b"", b'{}')


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


#   JWT: byte 0 = mode (bit 0: sign again, bit 1: "Bearer " prefix), then
#   the token.
def token(name, claims, header=None, mode=0, key=SECRET):
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing = b64(json.dumps(header, separators=(",", ":")).encode()) + b"." \
        + b64(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
    signature = b64(hmac.new(key, signing, hashlib.sha256).digest())
    write("token", name, bytes([mode]) + signing + b"." + signature)


def token_seeds():
    alice = {"sub": "alice", "name": "Alice", "iat": 1700000000, "exp": EXP}
    token("valid", alice)
    token("valid-bearer-resigned", alice, mode=3)
    token("name-utf8", {"sub": "bob", "name": "Bøb ✓ 𝄞", "exp": EXP})
    token("nbf-real-exp", {"sub": "u.1@x:y", "nbf": 1600000000.5, "exp": 4102444800.25})
    token("null-name", {"sub": "carol", "name": None, "exp": EXP}, mode=1)
    token("expired", {"sub": "alice", "exp": 1600000000}, mode=1)
    token("bad-sub", {"sub": "no spaces", "exp": EXP}, mode=1)
    token("control-name", {"sub": "alice", "name": "A\u0085B", "exp": EXP}, mode=1)
    token("alg-none", alice, header={"alg": "none"}, mode=1)
    token("alg-rs256", alice, header={"alg": "RS256", "typ": "JWT"})
    token("other-secret", alice, key=b"not-our-secret")


#   Envelopes (proto/SPEC.md): "PL" version command, session corr seq
#   created status, nine u16-length strings, u32-length body.
def msg(name, command, numbers=(0, 0, 0, 0, 0), strings=(), body=b""):
    strings = list(strings) + [b""] * (9 - len(strings))
    data = b"PL" + bytes([1, command]) + struct.pack(">QQQqI", *numbers)
    for text in strings:
        data += struct.pack(">H", len(text)) + text
    data += struct.pack(">I", len(body)) + body
    write("msg", name, data)


def msg_seeds():
    #   Slots: route room user name kind sub key id cmid
    msg("hello", 1, strings=(b"", b"", b"", b"h1/conn-0", b"conn"))
    msg("ping", 2, numbers=(0, 0, 0, 0, 3))
    msg("join", 4, strings=(b"", b"r1"))
    msg("authz", 6, numbers=(7, 1, 0, 0, 0), strings=(b"", b"r1", b"alice", b"", b"subscribe"))
    msg("send", 7, numbers=(7, 2, 0, 0, 0),
        strings=(b"conn-0", b"r1", b"alice", b"Alice", b"TALK", b"", b"", b"", b"c-1"), body=b"hi")
    msg("result", 8, numbers=(7, 2, 42, 0, 200), strings=(b"conn-0", b"r1"), body=b"{}")
    msg("deliver", 9, numbers=(0, 0, 42, 1700000000000, 0), strings=(b"", b"r1"),
        body=b'{"roomId":"r1","seq":42}')
    msg("persist", 10, numbers=(0, 0, 42, -1, 0),
        strings=(b"", b"r1", b"alice", b"Alice", b"TALK", b"", b"p:{0}:stream", b"1-0", b"c-1"),
        body=b"\0binary\xff")
    msg("query", 12, numbers=(0, 3, 100, 0, 50), strings=(b"", b"r1", b"alice", b"Alice", b"room.messages"))
    msg("replay", 14, numbers=(7, 4, 10, 0, 200), strings=(b"conn-0", b"r1", b"alice"))


#   Gate: byte 0 = the size of the pieces (0: all at once), then the bytes
def gate(name, head, step=0):
    write("gate", name, bytes([step]) + head)


def gate_seeds():
    gate("get", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    gate("ws", b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         b"Sec-WebSocket-Protocol: v12.stomp\r\n\r\n", step=7)
    gate("post", b"POST /api/rooms HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", step=1)
    gate("h2c", b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
         b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    gate("ws-version", b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
    gate("query", b"GET /api/rooms/r1/messages?limit=2&before=10;x=%41 HTTP/1.0\r\n\r\n")
    gate("nul", b"GET /a%00 HTTP/1.1\r\n\r\n")
    gate("escape", b"GET /a%zz HTTP/1.1\r\n\r\n")
    gate("absolute", b"GET http://x/ HTTP/1.1\r\n\r\n")
    gate("method", b"BREW / HTTP/1.1\r\n\r\n")
    gate("version", b"GET / HTTP/2.0\r\n\r\n")
    gate("header", b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
    gate("big", b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 600 + b"\r\n\r\n", step=100)
    gate("lines", b"GET / HTTP/1.1\r\n" + b"".join(b"Cookie: a=%d\r\n" % line for line in range(9))
         + b"\r\n", step=3)
    gate("protocols", b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: v12.stomp,"
         b" v11.stomp\r\nsec-websocket-protocol:  v10.stomp\r\nSec-WebSocket-Extensions: "
         b"permessage-deflate; client_max_window_bits\r\nSec-WebSocket-Extensions: x\r\n\r\n")
    #   The web chat's files (issue 10): GET only, rewritten to close
    gate("file", b"GET /js/app.js?v=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"
         b"If-None-Match: \"1\"\r\n\r\n", step=7)
    gate("dots", b"GET /js/%2e%2E/..%2fsecret HTTP/1.1\r\n\r\n")
    gate("file-post", b"POST /index.html HTTP/1.1\r\nContent-Length: 0\r\n\r\n")


if __name__ == "__main__":
    stomp_seeds()
    api_seeds()
    token_seeds()
    msg_seeds()
    gate_seeds()
