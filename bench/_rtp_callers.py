"""The far ends for bench/ivr_media.py, run in a process of its own: LEGS UDP "phones".

    python bench/_rtp_callers.py LEGS OUT.json [--talk]

It binds LEGS sockets on 127.0.0.1, prints their ports as one JSON line, and notes the
kernel's receive timestamp (SO_TIMESTAMPNS) of every datagram, so how busy this process is
does not blur the figures. With ``--talk`` each phone answers every packet it gets with a
20 ms PCMU packet of its own (the caller speaking), so the platform also has to listen.
On SIGTERM it writes {"arrivals": [[ns, ...] per leg], "sent": N} to OUT.json and exits.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import struct
import sys
from types import FrameType

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; also the cmsg type
TIMESPEC = struct.Struct("@qq")
RTP_HEADER = struct.Struct("!BBHII")
SILENCE = b"\xff" * 160


def main() -> None:
    legs, out = int(sys.argv[1]), sys.argv[2]
    talk = "--talk" in sys.argv[3:]
    sockets = []
    for _ in range(legs):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sockets.append(sock)
    by_fd = {s.fileno(): i for i, s in enumerate(sockets)}
    arrivals: list[list[int]] = [[] for _ in sockets]
    sequence = [0] * legs
    sent = 0
    stop = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    poll = select.epoll()
    for sock in sockets:
        poll.register(sock.fileno(), select.EPOLLIN)
    print(json.dumps([s.getsockname()[1] for s in sockets]), flush=True)
    cmsg_space = socket.CMSG_SPACE(TIMESPEC.size)
    while not stop:
        try:
            events = poll.poll(0.2)
        except InterruptedError:
            continue
        for fd, _ in events:
            leg = by_fd[fd]
            sock = sockets[leg]
            while True:
                try:
                    _data, ancillary, _flags, address = sock.recvmsg(2048, cmsg_space)
                except BlockingIOError:
                    break
                for level, kind, value in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        seconds, nanoseconds = TIMESPEC.unpack(value[: TIMESPEC.size])
                        arrivals[leg].append(seconds * 1_000_000_000 + nanoseconds)
                if talk:
                    seq = sequence[leg]
                    sequence[leg] = (seq + 1) & 0xFFFF
                    header = RTP_HEADER.pack(0x80, 0, seq, (seq * 160) & 0xFFFFFFFF, 1000 + leg)
                    sock.sendto(header + SILENCE, address)
                    sent += 1
    with open(out, "w") as file:
        json.dump({"arrivals": arrivals, "sent": sent}, file)


if __name__ == "__main__":
    main()
