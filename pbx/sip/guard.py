"""Abuse protection policy for SIP authentication: failure counting, bans, scanner detection.

Owns the in-memory ban list and failure/success history. Pure policy with an injected clock:
must not import twisted, socket, sqlite3, flask or pbx.store (the service persists bans through
``active_bans``/``load`` and converts to the store's own Ban dataclass).

Rules:
- ``max_failures`` failed credential checks from one address within ``window`` seconds ban the
  whole address for ``ban_time`` seconds, unless the address authenticated successfully in the
  last ``trusted_window`` seconds (e.g. an office NAT): then only the (address, username) pair
  is banned, counting that username's failures only.
- Allowlisted addresses/networks are never banned and never reported blocked.
- Memory is bounded: at most ``MAX_TRACKED`` (100 000) entries each in the per-address
  failure, per-pair failure and last-success tables (least recently updated dropped first),
  each entry holding at most ``max_failures`` timestamps; at most ``MAX_BANS`` bans (expired
  ones pruned first, then the oldest created). Measured ~850 bytes per tracked address, so
  roughly 100 MB worst case in total.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_TRACKED = 100_000
MAX_BANS = 100_000

_Key = tuple[str, str | None]  # (address, username); username None = the whole address


@dataclass(frozen=True, slots=True)
class GuardConfig:
    max_failures: int = 5
    window: float = 60.0
    ban_time: float = 300.0
    trusted_window: float = 600.0
    allowlist: tuple[str, ...] = ()  # IPs or CIDR networks
    scanner_agents: tuple[str, ...] = ("friendly-scanner", "sipvicious", "sipcli")


@dataclass(frozen=True, slots=True)
class Ban:
    address: str
    username: str | None  # None: the whole address is banned
    until: float
    reason: str
    created_at: float


@functools.lru_cache(maxsize=65536)
def normalize_address(address: str) -> str:
    """Canonical text of an IP address (IPv4-mapped IPv6 becomes IPv4); other text lower-cased.

    Cached: it runs for every request, and ipaddress parsing is slow.
    """
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class _History:
    """Recent failure timestamps per key, bounded in keys and in timestamps per key."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._times: OrderedDict[_Key, tuple[float, ...]] = OrderedDict()

    def add(self, key: _Key, now: float, window: float) -> int:
        """Record a failure at ``now``; return how many fall within ``window``."""
        recent = tuple(t for t in self._times.pop(key, ()) if now - t <= window)
        recent = (recent + (now,))[-self._keep :]
        self._times[key] = recent
        while len(self._times) > MAX_TRACKED:
            self._times.popitem(last=False)
        return len(recent)

    def clear(self, key: _Key) -> None:
        self._times.pop(key, None)

    def clear_address(self, address: str) -> None:
        for key in [k for k in self._times if k[0] == address]:
            del self._times[key]

    def __len__(self) -> int:
        return len(self._times)


class Guard:
    """Decides who is blocked; the SIP service asks before handling and reports outcomes."""

    def __init__(self, config: GuardConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self._allow = [ipaddress.ip_network(entry, strict=False) for entry in config.allowlist]
        self._agents = tuple(agent.lower() for agent in config.scanner_agents)
        keep = max(1, config.max_failures)
        self._address_failures = _History(keep)
        self._pair_failures = _History(keep)
        self._successes: OrderedDict[str, float] = OrderedDict()
        self._bans: dict[_Key, Ban] = {}

    # -- queries --

    def clock(self) -> float:
        """The guard's notion of now (the injected clock)."""
        return self._clock()

    def is_allowlisted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(normalize_address(address))
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self._allow)

    def is_blocked(self, address: str, username: str | None = None) -> bool:
        """True if the address, or the (address, username) pair, is under an active ban."""
        if not self._bans:
            return False  # the common case, checked for every request: no work at all
        address = normalize_address(address)
        if self._active((address, None)) is None and (
            username is None or self._active((address, username)) is None
        ):
            return False
        return not self.is_allowlisted(address)

    def is_scanner(self, user_agent: str | None) -> bool:
        """Known SIP scanner User-Agent (case-insensitive substring match)."""
        if not user_agent:
            return False
        agent = user_agent.lower()
        return any(needle in agent for needle in self._agents)

    def is_trusted(self, address: str) -> bool:
        """Authenticated successfully within ``trusted_window`` seconds."""
        last = self._successes.get(normalize_address(address))
        return last is not None and self._clock() - last <= self.config.trusted_window

    def active_bans(self) -> list[Ban]:
        self._prune_bans()
        return sorted(self._bans.values(), key=lambda ban: (ban.created_at, ban.address))

    # -- outcomes --

    def record_failure(self, address: str, username: str | None) -> Ban | None:
        """Count a failed credential check; return the Ban it triggered, if any."""
        address = normalize_address(address)
        if self.is_allowlisted(address):
            return None
        now, cfg = self._clock(), self.config
        total = self._address_failures.add((address, None), now, cfg.window)
        pair = self._pair_failures.add((address, username), now, cfg.window)
        if self._active((address, None)) is not None:
            return None
        if self.is_trusted(address):
            if username is None or pair < cfg.max_failures:
                return None
            if self._active((address, username)) is not None:
                return None
            self._pair_failures.clear((address, username))
            reason = f"{pair} failed authentications for {username!r} in {cfg.window:g}s"
            return self._ban(address, username, reason)
        if total < cfg.max_failures:
            return None
        self._address_failures.clear((address, None))
        return self._ban(address, None, f"{total} failed authentications in {cfg.window:g}s")

    def record_success(self, address: str, username: str | None) -> None:
        """Remember the address as trusted and reset that pair's failure count."""
        address = normalize_address(address)
        self._successes.pop(address, None)
        self._successes[address] = self._clock()
        while len(self._successes) > MAX_TRACKED:
            self._successes.popitem(last=False)
        self._pair_failures.clear((address, username))

    # -- ban list --

    def ban(self, address: str, username: str | None, reason: str) -> Ban:
        """Ban explicitly for ``ban_time`` (e.g. a scanner); allowlisting still wins on lookup."""
        return self._ban(normalize_address(address), username, reason)

    def load(self, bans: Iterable[Ban]) -> None:
        """Restore persisted bans (expired ones are skipped; the later ``until`` wins)."""
        now = self._clock()
        for ban in bans:
            if ban.until <= now:
                continue
            key = (normalize_address(ban.address), ban.username)
            current = self._bans.get(key)
            if current is None or current.until < ban.until:
                self._bans[key] = Ban(key[0], ban.username, ban.until, ban.reason, ban.created_at)
        self._cap_bans()

    def lift(self, address: str) -> int:
        """Remove every active ban on ``address`` (whole and per-user); return how many."""
        address = normalize_address(address)
        self._prune_bans()
        keys = [key for key in self._bans if key[0] == address]
        for key in keys:
            del self._bans[key]
        self._address_failures.clear_address(address)
        self._pair_failures.clear_address(address)
        if keys:
            log.info("lifted %d ban(s) on %s", len(keys), address)
        return len(keys)

    # -- internals --

    def _ban(self, address: str, username: str | None, reason: str) -> Ban:
        now = self._clock()
        ban = Ban(address, username, now + self.config.ban_time, reason, now)
        self._bans[(address, username)] = ban
        self._cap_bans()
        log.warning("banned %s%s: %s", address, f" user {username!r}" if username else "", reason)
        return ban

    def _active(self, key: _Key) -> Ban | None:
        ban = self._bans.get(key)
        if ban is not None and ban.until <= self._clock():
            del self._bans[key]
            return None
        return ban

    def _prune_bans(self) -> None:
        now = self._clock()
        for key in [k for k, ban in self._bans.items() if ban.until <= now]:
            del self._bans[key]

    def _cap_bans(self) -> None:
        if len(self._bans) <= MAX_BANS:
            return
        self._prune_bans()
        excess = len(self._bans) - MAX_BANS
        if excess > 0:
            oldest = sorted(self._bans, key=lambda key: self._bans[key].created_at)[:excess]
            for key in oldest:
                del self._bans[key]
