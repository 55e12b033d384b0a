#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# A control-protocol client written from docs/control-protocol.md alone (a
# second implementation of the framing, so the tests check the document as
# well as lib/ctlmsg).
#
#   ctl-client.py SOCKET CMD ['{"arg": ...}']   print the reply; exit 0 if ok,
#                                               1 if the command failed
#   ctl-client.py SOCKET --raw HEX              send raw bytes, print the reply
import json
import socket
import struct
import sys

MAGIC = b"QTCM"
VERSION = 1


def send(sock, body, fds=()):
    data = json.dumps(body).encode()
    hdr = MAGIC + struct.pack("<HHII", VERSION, len(fds), len(data), 0)
    socket.send_fds(sock, [hdr + data], list(fds))


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed")
        buf += chunk
    return buf


def recv(sock):
    hdr = recv_exact(sock, 16)
    if hdr[:4] != MAGIC:
        raise ValueError("bad magic in reply")
    version, nr_fds, length, reserved = struct.unpack("<HHII", hdr[4:])
    if version != VERSION or reserved != 0:
        raise ValueError("bad reply header")
    return json.loads(recv_exact(sock, length))


def main():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(sys.argv[1])
    if sys.argv[2] == "--raw":
        sock.sendall(bytes.fromhex(sys.argv[3]))
    else:
        args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
        send(sock, {"cmd": sys.argv[2], "args": args})
    reply = recv(sock)
    print(json.dumps(reply, indent=2, sort_keys=True))
    return 0 if reply.get("ok") is True else 1


if __name__ == "__main__":
    sys.exit(main())
