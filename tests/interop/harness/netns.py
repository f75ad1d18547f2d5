"""Private network namespaces for interop tests (Linux, needs CAP_SYS_ADMIN: tests run as root).

Owns: moving the CALLING THREAD of the test process into a fresh network namespace for the
duration of a ``with`` block, and back afterwards. Inside the block every socket the test opens
and every process or thread it starts (pbx server, SIPp, baresip, linphone, pyVoIP threads)
lives in the namespace, so a whole test -- server and peers together -- is isolated, and the
only addresses that exist are 127.0.0.0/8.

How: ``unshare(CLONE_NEWNET)`` through libc on the calling thread (network namespaces are
per-thread; children and threads inherit the namespace of the thread that creates them), then
``ip link set lo up`` and a veth pair ``nsv0``/``nsv1`` carrying 127.0.0.2/32 (baresip needs a
non-loopback interface with an IPv4 address, otherwise it fails with "rtp_listen failed" or puts
the host's eth0 address into SDP -- shared/design/dependencies.md 4.10). On exit the thread
goes back with ``setns`` to the namespace it came from; the private namespace disappears when
its last process exits.

Rules: start nothing inside the block that outlives it; sockets opened inside stay in the
namespace. Only 127.0.0.0/8 addresses are ever configured.

Must not import anything from ``pbx``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
VETH_NAME = "nsv0"
VETH_PEER = "nsv1"

_libc = ctypes.CDLL(None, use_errno=True)
_state = threading.local()


class NetnsError(RuntimeError):
    """A namespace could not be created, configured or left."""


@dataclass(frozen=True)
class Netns:
    """The namespace the calling thread is in: its extra addresses (besides 127.0.0.1)."""

    addresses: tuple[str, ...]
    inode: int


def _unshare_net() -> None:
    if _libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"unshare(CLONE_NEWNET) failed: {os.strerror(err)} (errno {err})")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns(CLONE_NEWNET) failed: {os.strerror(err)} (errno {err})")


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _configure(addresses: Sequence[str]) -> None:
    _ip("link", "set", "lo", "up")
    if not addresses:
        return
    _ip("link", "add", VETH_NAME, "type", "veth", "peer", "name", VETH_PEER)
    for addr in addresses:
        if not addr.startswith("127."):
            raise NetnsError(f"only 127.0.0.0/8 addresses are allowed, not {addr}")
        _ip("addr", "add", f"{addr}/32", "dev", VETH_NAME)
    _ip("link", "set", VETH_PEER, "up")
    _ip("link", "set", VETH_NAME, "up")


def current() -> Netns | None:
    """The private namespace the calling thread entered with private_netns(), if any."""
    value: Netns | None = getattr(_state, "netns", None)
    return value


@contextmanager
def private_netns(addresses: Sequence[str] = ("127.0.0.2",)) -> Iterator[Netns]:
    """Run the block in a fresh network namespace with lo up and addresses on a veth link."""
    if current() is not None:
        raise NetnsError("already inside a private namespace")
    if shutil.which("ip") is None:
        raise NetnsError("the 'ip' tool (iproute2) is missing")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _unshare_net()
        try:
            _configure(addresses)
            ns = Netns(tuple(addresses), os.stat("/proc/thread-self/ns/net").st_ino)
            _state.netns = ns
            log.debug("entered private netns %d with %s", ns.inode, addresses)
            yield ns
        finally:
            _state.netns = None
            _setns(home)
            log.debug("left private netns")
    finally:
        os.close(home)


def unavailable_reason() -> str | None:
    """None when private_netns() works here; otherwise why not (for pytest.skip).

    Probes in a short-lived thread, so the caller's namespace is never touched.
    """
    if shutil.which("ip") is None:
        return "the 'ip' tool (iproute2) is missing"
    result: list[str | None] = []

    def probe() -> None:
        try:
            with private_netns():
                pass
            result.append(None)
        except NetnsError as exc:
            result.append(str(exc))
        except OSError as exc:  # e.g. /proc not mounted
            result.append(f"{exc.strerror or exc} (errno {exc.errno or errno.EIO})")

    thread = threading.Thread(target=probe, name="netns-probe")
    thread.start()
    thread.join(30)
    if not result:
        return "netns probe hung"
    return result[0]
