"""Free loopback ports for interop fixtures.

Owns: picking ports on 127.0.0.1 that are free for BOTH UDP and TCP (SIP listens on both with
one number) and reserving them so that concurrent fixtures -- in this process, in other pytest
processes, in other helpers' test runs on the same machine -- never get the same number.

A reservation is an exclusive POSIX record lock on byte <port> of ``$TMPDIR/pbx-test-ports.lock``
held by this process until :func:`release` (or process exit, when the kernel drops it), plus a
bind test of UDP and TCP on 127.0.0.1 at the time of picking. Ports come from 20000-32000, below the Linux
ephemeral range (32768-60999) so that outgoing connections do not steal them.

Must not import anything from ``pbx`` (the harness drives the server only from outside).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

PORT_LOW = 20000
PORT_HIGH = 32000
LOOPBACK = "127.0.0.1"

_lock = threading.Lock()
_held: set[int] = set()  # ports this process has reserved
_lock_path = Path(tempfile.gettempdir()) / "pbx-test-ports.lock"
_lock_fd: int | None = None


class NoFreePort(RuntimeError):
    """No free port (or block of ports) could be reserved."""


def _bind_ok(port: int, host: str = LOOPBACK) -> bool:
    """True when both a UDP and a TCP socket can bind host:port right now."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def _fd() -> int:
    global _lock_fd
    if _lock_fd is None:
        _lock_fd = os.open(_lock_path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o666)
    return _lock_fd


def _try_lock(port: int) -> bool:
    """Lock byte <port> of the shared lock file; False if another process holds it."""
    if port in _held:
        return False
    try:
        fcntl.lockf(_fd(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    _held.add(port)
    return True


def _unlock(port: int) -> None:
    if port in _held:
        _held.discard(port)
        fcntl.lockf(_fd(), fcntl.LOCK_UN, 1, port)


def free_port(host: str = LOOPBACK) -> int:
    """Reserve and return one port free for UDP and TCP on host."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Reserve count distinct ports (not necessarily contiguous), each free for UDP and TCP."""
    with _lock:
        got: list[int] = []
        for _ in range(count * 200):
            if len(got) == count:
                break
            port = random.randrange(PORT_LOW, PORT_HIGH)
            if not _try_lock(port):
                continue
            if _bind_ok(port, host):
                got.append(port)
            else:
                _unlock(port)
        if len(got) < count:
            for port in got:
                _unlock(port)
            raise NoFreePort(f"could not reserve {count} free ports on {host}")
        log.debug("reserved ports %s", got)
        return got


def free_port_block(size: int, host: str = LOOPBACK, align: int = 2) -> tuple[int, int]:
    """Reserve a contiguous block of size ports (e.g. an RTP range); returns (low, high) inclusive.

    low is a multiple of align (RTP wants even ports, RFC 3550 section 11).
    """
    with _lock:
        for _ in range(200):
            low = random.randrange(PORT_LOW, PORT_HIGH - size) // align * align
            taken: list[int] = []
            ok = True
            for port in range(low, low + size):
                if not _try_lock(port):
                    ok = False
                    break
                taken.append(port)
                if not _bind_ok(port, host):
                    ok = False
                    break
            if ok:
                log.debug("reserved port block %d-%d", low, low + size - 1)
                return low, low + size - 1
            for port in taken:
                _unlock(port)
        raise NoFreePort(f"could not reserve a block of {size} ports on {host}")


def release(*ports: int) -> None:
    """Give reserved ports back (optional: the reservation ends with the process anyway)."""
    with _lock:
        for port in ports:
            _unlock(port)


def release_block(low: int, high: int) -> None:
    """Give back a block reserved by free_port_block."""
    release(*range(low, high + 1))


class Reservation:
    """The ports one driver holds; release() is idempotent, so a driver stopped twice never
    frees ports that meanwhile went to someone else."""

    def __init__(self, host: str = LOOPBACK) -> None:
        self.host = host
        self.held: list[int] = []

    def port(self) -> int:
        got = free_port(self.host)
        self.held.append(got)
        return got

    def ports(self, count: int) -> list[int]:
        got = free_ports(count, self.host)
        self.held += got
        return got

    def block(self, size: int, align: int = 2) -> tuple[int, int]:
        low, high = free_port_block(size, self.host, align)
        self.held += range(low, high + 1)
        return low, high

    def release(self) -> None:
        held, self.held = self.held, []
        release(*held)
