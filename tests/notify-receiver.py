#!/usr/bin/env python3
"""Stand in for systemd's notify socket: bind one unix datagram socket per
name given and print every message received as a JSON line
{"name": ..., "message": ...}, until stdin closes."""
import json
import os
import select
import socket
import sys

folder = sys.argv[1]
sockets = {}
for name in sys.argv[2:]:
    path = os.path.join(folder, name + ".notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sockets[sock] = name
print(json.dumps({"name": "", "message": "listening"}), flush=True)
while True:
    ready, _, _ = select.select(list(sockets) + [sys.stdin], [], [])
    for sock in ready:
        if sock is sys.stdin:
            if not sys.stdin.readline():
                sys.exit(0)
            continue
        data = sock.recv(4096).decode("utf-8", "replace")
        print(json.dumps({"name": sockets[sock], "message": data}), flush=True)
