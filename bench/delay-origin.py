#!/usr/bin/env python3
"""Delaying HTTP/1.1 origins for bench/steering.sh (stdlib only, asyncio).

    delay-origin.py PORTS_FILE DELAY_MS [DELAY_MS ...]

Starts one keep-alive origin per DELAY_MS on 127.0.0.1 (port chosen by the
kernel), each answering any GET with a 1 KiB body after its delay, plus a
control port. Writes "CTL PORT1 PORT2 ..." to PORTS_FILE once listening.
Control port: GET /count -> "n1 n2 ..." (requests per origin since the last
reset), GET /reset -> zeroes the counters. Responses carry X-Backend: i.
"""
import asyncio
import os
import sys

BODY = b"x" * 1023 + b"\n"
counts = []


def response(body, extra=b""):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
            % (len(body), extra)) + body


class Origin(asyncio.Protocol):
    def __init__(self, idx, delay):
        self.idx, self.delay, self.buf, self.busy = idx, delay, b"", False
        self.canned = response(BODY, b"X-Backend: %d\r\n" % idx)

    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data):
        self.buf += data
        self.next()

    def next(self):  # one request at a time per connection, in order
        if self.busy or self.t.is_closing():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head, self.buf = self.buf[:end].lower(), self.buf[end + 4:]
        self.busy = True
        if self.idx < 0:
            self.reply(self.control(head), head)
            return
        counts[self.idx] += 1
        asyncio.get_running_loop().call_later(self.delay, self.reply, self.canned, head)

    def control(self, head):
        if head.startswith(b"get /reset"):
            counts[:] = [0] * len(counts)
        return response((" ".join(map(str, counts)) + "\n").encode())

    def reply(self, data, head):
        self.busy = False
        if self.t.is_closing():
            return
        self.t.write(data)
        if b"\r\nconnection: close" in head or head.split(b"\r\n", 1)[0].endswith(b"http/1.0"):
            self.t.close()
        else:
            self.next()


async def main():
    path, delays = sys.argv[1], [float(d) / 1000 for d in sys.argv[2:]]
    counts.extend([0] * len(delays))
    loop = asyncio.get_running_loop()
    ports = []
    for idx, delay in [(-1, 0.0)] + list(enumerate(delays)):
        srv = await loop.create_server(lambda i=idx, d=delay: Origin(i, d), "127.0.0.1", 0, backlog=1024)
        ports.append(srv.sockets[0].getsockname()[1])
    with open(path + ".tmp", "w") as fh:
        fh.write(" ".join(map(str, ports)) + "\n")
    os.rename(path + ".tmp", path)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
