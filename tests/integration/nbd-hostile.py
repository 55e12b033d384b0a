#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# A misbehaving NBD client, written from the NBD protocol document alone.
# Each case connects, breaks one rule, and checks that the server answers
# with the protocol's error or hangs up, and, where the connection should
# survive, that it still serves a correct read afterwards.
#
#   nbd-hostile.py SOCKET SIZE PATTERN   (the export's size, and the byte
#                                         its first MiB holds)
#   nbd-hostile.py SOCKET --slow-reader  (send reads, never read the
#                                         replies; exits when killed)
#   nbd-hostile.py SOCKET --readonly     (a read-only export refuses every
#                                         write with EPERM)
import os
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCTURED_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_GO, OPT_STRUCTURED_REPLY = 1, 2, 7, 8
OPT_SET_META_CONTEXT = 10
REP_ACK, REP_INFO = 1, 3
REP_ERR_UNSUP, REP_ERR_INVALID = 2**31 + 1, 2**31 + 3
REP_ERR_UNKNOWN, REP_ERR_TOO_BIG = 2**31 + 6, 2**31 + 9
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
CMD_BLOCK_STATUS = 7
EPERM, EINVAL, ENOSPC, EOVERFLOW = 1, 22, 28, 75

failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL: " + msg, flush=True)


def ok(msg):
    print("ok: " + msg, flush=True)


class Closed(Exception):
    pass


class Client:
    def __init__(self, path, timeout=30):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.cookie = 1
        self.base = 0

    def recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise Closed()
            buf += chunk
        return buf

    def closed_by_server(self):
        """True when the server hangs up (EOF or reset) within the timeout."""
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def greet(self, flags=3):
        magic, opts, hflags = struct.unpack(">QQH", self.recv(18))
        assert magic == NBDMAGIC and opts == IHAVEOPT, "bad greeting"
        self.s.sendall(struct.pack(">I", flags))

    def send_opt(self, opt, data=b"", length=None):
        n = len(data) if length is None else length
        self.s.sendall(struct.pack(">QII", IHAVEOPT, opt, n) + data)

    def opt_reply(self):
        magic, opt, rtype, n = struct.unpack(">QIII", self.recv(20))
        assert magic == REPLY_MAGIC, "bad option reply magic"
        return opt, rtype, self.recv(n)

    def go(self, structured=True, contexts=()):
        self.structured = structured
        if structured:
            self.send_opt(OPT_STRUCTURED_REPLY)
            assert self.opt_reply()[1] == REP_ACK
        if contexts:
            q = b"".join(struct.pack(">I", len(c)) + c for c in contexts)
            self.send_opt(OPT_SET_META_CONTEXT,
                          struct.pack(">II", 0, len(contexts)) + q)
            while self.opt_reply()[1] != REP_ACK:
                pass
        self.send_opt(OPT_GO, struct.pack(">IH", 0, 0))
        while True:
            _, rtype, data = self.opt_reply()
            if rtype == REP_ACK:
                return
            assert rtype == REP_INFO, "GO failed: %#x" % rtype
            if struct.unpack(">H", data[:2])[0] == 0:  # NBD_INFO_EXPORT
                self.tx_flags = struct.unpack(">H", data[10:12])[0]

    def request(self, cmd, offset, length, flags=0, payload=b"", magic=REQUEST_MAGIC):
        self.cookie += 1
        self.s.sendall(struct.pack(">IHHQQI", magic, flags, cmd, self.cookie,
                                   offset, length) + payload)
        return self.cookie

    def reply(self, want_len=0):
        """(error, data) of one complete reply, simple or structured."""
        magic = struct.unpack(">I", self.recv(4))[0]
        if magic == SIMPLE_MAGIC:
            err, cookie = struct.unpack(">IQ", self.recv(12))
            return err, (self.recv(want_len) if not err else b"")
        assert magic == STRUCTURED_MAGIC, "bad reply magic %#x" % magic
        data, err = bytearray(want_len), 0
        while True:
            flags, rtype, cookie, n = struct.unpack(">HHQI", self.recv(16))
            payload = self.recv(n)
            if rtype == 1:  # OFFSET_DATA
                off = struct.unpack(">Q", payload[:8])[0] - self.base
                data[off:off + n - 8] = payload[8:]
            elif rtype == 2:  # OFFSET_HOLE (zeros already)
                pass
            elif rtype & 0x8000:
                err = struct.unpack(">I", payload[:4])[0]
            if flags & 1:
                return err, bytes(data)

    def read(self, offset, length, flags=0):
        self.base = offset
        self.request(CMD_READ, offset, length, flags)
        return self.reply(length)


def check_read(c, pattern, what):
    err, data = c.read(4096, 8192)
    if err or data != bytes([pattern]) * 8192:
        fail(what + ": the connection no longer reads correctly (error %d)" % err)
    else:
        ok(what + ", and the connection still reads correctly")


def expect_error(c, cookie_err, want, what):
    if cookie_err != want:
        fail("%s: error %d, wanted %d" % (what, cookie_err, want))
    else:
        ok("%s: error %d" % (what, want))


def handshake_cases(path):
    c = Client(path)
    c.greet(flags=1 << 7)
    ok("unknown client flags: closed") if c.closed_by_server() else fail(
        "unknown client flags were accepted")

    c = Client(path)
    c.greet()
    c.s.sendall(struct.pack(">QII", 0x1122334455667788, OPT_GO, 0))
    ok("bad option magic: closed") if c.closed_by_server() else fail(
        "bad option magic was accepted")

    c = Client(path)
    c.greet()
    c.send_opt(0x4242)
    r = c.opt_reply()[1]
    ok("unknown option: NBD_REP_ERR_UNSUP") if r == REP_ERR_UNSUP else fail(
        "unknown option answered %#x" % r)
    c.send_opt(OPT_GO, b"\x00" * 3)
    r = c.opt_reply()[1]
    ok("short GO data: NBD_REP_ERR_INVALID") if r == REP_ERR_INVALID else fail(
        "short GO data answered %#x" % r)
    c.send_opt(OPT_GO, struct.pack(">I", 6) + b"nosuch" + struct.pack(">H", 0))
    r = c.opt_reply()[1]
    ok("unknown export: NBD_REP_ERR_UNKNOWN") if r == REP_ERR_UNKNOWN else fail(
        "unknown export answered %#x" % r)
    big = 1 << 20
    c.send_opt(OPT_GO, b"\x00" * big)
    r = c.opt_reply()[1]
    ok("1 MiB of option data: NBD_REP_ERR_TOO_BIG") if r == REP_ERR_TOO_BIG else fail(
        "1 MiB of option data answered %#x" % r)
    c.go()
    check_read(c, PATTERN, "after refused options the export opens")

    c = Client(path)
    c.greet()
    c.send_opt(OPT_EXPORT_NAME, b"nosuch")
    ok("EXPORT_NAME of an unknown export: closed") if c.closed_by_server() else fail(
        "EXPORT_NAME of an unknown export was accepted")

    c = Client(path)
    c.greet()
    c.s.sendall(struct.pack(">Q", IHAVEOPT)[:5])
    c.s.close()
    ok("hung up in the middle of an option header")


def transmission_cases(path, size):
    c = Client(path)
    c.greet()
    c.go(structured=False)
    err, _ = c.read(size - 4096, 8192)
    expect_error(c, err, EINVAL, "read past the end")
    c.request(CMD_WRITE, size - 512, 1024, payload=b"\xee" * 1024)
    expect_error(c, c.reply()[0], ENOSPC, "write past the end (payload consumed)")
    c.request(CMD_READ, 0, 64 << 20)
    expect_error(c, c.reply()[0], EOVERFLOW, "read of 64 MiB")
    c.request(99, 0, 0)
    expect_error(c, c.reply()[0], EINVAL, "unknown command")
    c.request(CMD_READ, 0, 512, flags=1 << 9)
    expect_error(c, c.reply()[0], EINVAL, "unknown command flag")
    c.request(CMD_READ, 0, 512, flags=1 << 2)
    expect_error(c, c.reply()[0], EINVAL, "DF without structured replies")
    c.request(CMD_FLUSH, 512, 0)
    expect_error(c, c.reply()[0], EINVAL, "flush with an offset")
    c.request(CMD_BLOCK_STATUS, 0, 4096)
    expect_error(c, c.reply()[0], EINVAL, "block status without a context")
    c.request(CMD_WRITE, 4096, 0)
    expect_error(c, c.reply()[0], 0, "zero-length write")
    # FAST_ZERO: whole clusters are fast; a partial block could only be
    # written, so it is refused with ENOTSUP and left alone
    c.request(6, 8 << 20, 1 << 20, flags=1 << 4)
    expect_error(c, c.reply()[0], 0, "fast zero of whole clusters")
    c.request(6, (8 << 20) - 100, 50, flags=1 << 4)
    expect_error(c, c.reply()[0], 95, "fast zero of a partial block")
    check_read(c, PATTERN, "after refused requests")

    c = Client(path)
    c.greet()
    c.go(structured=True)
    c.request(CMD_READ, size, 1)
    expect_error(c, c.reply()[0], EINVAL, "structured: read past the end")
    check_read(c, PATTERN, "structured replies")

    # two contexts at once, unaligned, and REQ_ONE: one chunk per context,
    # DONE on the last, descriptors within the range and adding up
    c = Client(path)
    c.greet()
    c.go(contexts=(b"base:allocation", b"qemu:allocation-depth"))
    for flags, off, length in ((0, 0, size), (0, 1000, 3 << 20), (1 << 3, 4097, 1 << 20)):
        c.request(CMD_BLOCK_STATUS, off, length, flags=flags)
        ids, done, good = [], False, True
        while not done:
            magic, cflags, ctype, cookie, n = struct.unpack(">IHHQI", c.recv(20))
            payload = c.recv(n)
            done = cflags & 1
            if ctype != 5:
                good = False
                continue
            ids.append(struct.unpack(">I", payload[:4])[0])
            descs = [struct.unpack(">II", payload[i:i + 8]) for i in range(4, n, 8)]
            total = sum(d[0] for d in descs)
            if not descs or total > length or (flags and len(descs) != 1):
                good = False
        if good and len(set(ids)) == 2:
            ok("block status, 2 contexts, flags %#x at %d+%d: one chunk each" % (flags, off, length))
        else:
            fail("block status, 2 contexts, flags %#x at %d+%d: chunks %s" % (flags, off, length, ids))
    check_read(c, PATTERN, "after block status")

    c = Client(path)
    c.greet()
    c.go()
    c.request(CMD_WRITE, 0, 64 << 20)
    ok("a 64 MiB write header: closed") if c.closed_by_server() else fail(
        "a write over the maximum was not refused")

    c = Client(path)
    c.greet()
    c.go()
    c.request(CMD_READ, 0, 512, magic=0xDEADBEEF)
    ok("bad request magic: closed") if c.closed_by_server() else fail(
        "bad request magic was accepted")

    c = Client(path)
    c.greet()
    c.go()
    c.s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 7, 1 << 20, 1 << 20)
                + b"\xcc" * (300 << 10))
    c.s.close()
    ok("hung up in the middle of a write's payload")

    c = Client(path)
    c.greet()
    c.go()
    c.request(CMD_READ, 0, 4096)
    c.request(CMD_DISC, 0, 0)
    err, data = c.reply(4096)
    if err or len(data) != 4096:
        fail("the read before NBD_CMD_DISC was not answered")
    ok("NBD_CMD_DISC: the request before it answered, then closed") \
        if c.closed_by_server() else fail("NBD_CMD_DISC did not close")

    # a burst of more requests than the connection has slots, its tail
    # refused at once: the refusals are answered when the reads before them
    # free slots, though nothing else happens on the server afterwards
    for size, count in ((512, 300), (1 << 20, 64)):
        c = Client(path, timeout=20)
        c.greet()
        c.go(structured=False)
        burst = b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, i, 0, size)
                         for i in range(count))
        burst += b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, 99, 1000 + i, 0, 0)
                          for i in range(8))
        c.s.sendall(burst)
        got = 0
        try:
            for _ in range(count + 8):
                magic, err, cookie = struct.unpack(">IIQ", c.recv(16))
                if cookie < count and not err:
                    c.recv(size)
                got += 1
            ok("a burst of %d reads of %d bytes and 8 refused requests: all answered"
               % (count, size))
        except socket.timeout:
            fail("a burst of %d reads of %d bytes: only %d of %d replies came"
                 % (count, size, got, count + 8))

    conns = []
    for _ in range(20):
        c = Client(path)
        c.greet()
        conns.append(c)
    c = Client(path)
    c.greet()
    c.go()
    check_read(c, PATTERN, "20 connections idle in the handshake")
    for c in conns:
        c.s.close()


def readonly_cases(path):
    c = Client(path)
    c.greet()
    c.go(structured=False)
    if not c.tx_flags & 2:
        fail("a read-only export without NBD_FLAG_READ_ONLY")
    if c.tx_flags & ((1 << 5) | (1 << 6)):
        fail("a read-only export offers trim or write-zeroes")
    c.request(CMD_WRITE, 0, 4096, payload=b"\x11" * 4096)
    expect_error(c, c.reply()[0], EPERM, "read-only: write")
    c.request(4, 0, 4096)  # TRIM
    expect_error(c, c.reply()[0], EPERM, "read-only: trim")
    c.request(6, 0, 4096)  # WRITE_ZEROES
    expect_error(c, c.reply()[0], EPERM, "read-only: write zeroes")
    c.request(CMD_FLUSH, 0, 0)
    expect_error(c, c.reply()[0], 0, "read-only: flush")


def slow_reader(path):
    c = Client(path)
    c.greet()
    c.go()
    c.s.setblocking(False)
    sent = 0
    while True:
        try:
            c.request(CMD_READ, (sent % 32) << 20, 1 << 20)
            sent += 1
        except BlockingIOError:
            break
        except OSError:
            break
    print("slow reader: %d reads sent, none read" % sent, flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[2] == "--slow-reader":
        slow_reader(sys.argv[1])
    if len(sys.argv) == 3 and sys.argv[2] == "--readonly":
        readonly_cases(sys.argv[1])
        sys.exit(1 if failures else 0)
    path, size, PATTERN = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0)
    handshake_cases(path)
    transmission_cases(path, size)
    sys.exit(1 if failures else 0)
