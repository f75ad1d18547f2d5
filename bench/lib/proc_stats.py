"""Process bookkeeping for benchmarks: CPU time from /proc, process trees, ports, stopping by pid.

Owns reading utime+stime from /proc/PID/stat (proc(5)), finding a process's descendants,
picking a free loopback UDP port and stopping the processes a benchmark started (by pid only).
Stdlib only; must not import pbx, twisted or anything under ../shared.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOOPBACK = "127.0.0.1"


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onwards), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (threads are already in a process's own times)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime (fields 14 and 15 of proc(5) stat) of ``pids``, in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its live descendants (e.g. Kamailio's children)."""
    return cpu_seconds(descendants(pid))


def core_busy_seconds(cpu: int) -> float:
    """Seconds core ``cpu`` has spent busy, any process (proc(5) /proc/stat "cpuN", less idle
    and iowait): with the server's own CPU time it tells how much other load shared its core."""
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name == f"cpu{cpu}":
            ticks = [int(v) for v in values[:8]]
            return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
    raise ValueError(f"no core {cpu} in /proc/stat")


def udp_port_drops(port: int) -> int:
    """Datagrams dropped so far (full receive buffer) by the UDP sockets bound to 127.0.0.1:``port``
    ("drops", the last column of /proc/net/udp): a rise means that reader fell behind."""
    wanted = f"0100007F:{port:04X}"
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 12 and fields[1] == wanted:
            total += int(fields[-1])
    return total


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_udp_ports(count: int) -> list[int]:
    """``count`` distinct free loopback UDP ports whose +1 neighbours are also unused by them."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_udp_port()
        if all(abs(port - p) > 1 for p in ports):
            ports.append(port)
    return ports


def require_loopback(address: str) -> None:
    """Refuse any target that is not on 127.0.0.0/8 (benchmarks never leave the machine)."""
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"refusing non-loopback address {address}")


def pinned(cpu: int, argv: list[str], nice: int = 0) -> list[str]:
    """``argv`` run through taskset so it (and all it forks) stays on core ``cpu``; with
    ``nice`` < 0 it also runs ahead of other work on that core (the pid stays the same: both
    nice and taskset exec the program)."""
    prefix = ["nice", "-n", str(nice)] if nice else []
    return [*prefix, "taskset", "-c", str(cpu), *argv]


def set_autogroup_nice(nice: int) -> int | None:
    """Set the niceness of this session's scheduler autogroup (sched(7)); the previous one.

    With autogroups on, ``nice`` only ranks processes within their own session, so a server
    and SIPp started by this process outrank other sessions' work only through this. Returns
    None where autogroups are off or the kernel refuses.
    """
    path = Path("/proc/self/autogroup")
    try:
        previous = int(path.read_text().split("nice")[1])
        path.write_text(str(nice))
    except (OSError, IndexError, ValueError):
        return None
    return previous


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
    """SIGTERM the process we started (by its pid), SIGKILL it after ``grace`` s; its exit code."""
    if proc.poll() is None:
        log.debug("stopping pid %d", proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored SIGTERM, killing it", proc.pid)
            proc.kill()
            proc.wait(timeout=grace)
    return proc.returncode


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it returns true or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
