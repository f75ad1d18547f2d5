"""baresip driver: a real SIP user agent run headless and scripted over ctrl_tcp.

Owns: a generated config directory per instance (config, accounts, contacts, a tone wav),
starting ``baresip -f DIR`` with its log in DIR/baresip.log, the ctrl_tcp netstring-JSON
connection (``len:{json},``; commands ``{"command","params","token"}``, answers
``{"response":true,"ok":..,"data":..,"token":..}``, events ``{"event":true,"class","type",
"accountaor","param",..}``), and the verbs register / wait_registered / dial / accept / hangup /
wait_event / quit; for calls with more than one party: hold / resume / transfer (blind REFER)
/ select_call / calls, and with ``sip_trace=True`` (``baresip -s``) the SIP messages it sent
and received (sip_messages / received / wait_received). Audio source is ``aufile`` (a
generated 8 kHz tone wav), sink ``aubridge``. ``extra_modules`` load before the accounts (so
a codec module such as g722.so or opus.so can be named in an account's ``audio_codecs``);
``extra_config`` adds config lines, e.g. ``snd_path`` for the ``sndfile.so`` module, which
records dump-*-enc.wav / dump-*-dec.wav per call (named by the second the call's audio
started: two calls of one phone starting within the same second may collide).

baresip must run inside a private network namespace (harness.netns): outside one it puts the
host's eth0 address into SDP (shared/design/dependencies.md 4.10). start() refuses to run
outside one unless allow_host_network=True.

Must not import anything from ``pbx``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import socket
import struct
import subprocess
import threading
import time
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import netns, ports
from .procs import stop_process
from .sip_message import SipMessage, read_baresip_trace, select

log = logging.getLogger(__name__)

BARESIP_BIN = "baresip"
MODULE_PATH = "/usr/lib/baresip/modules"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_tokens = itertools.count(1)

Event = dict[str, Any]


class BaresipError(RuntimeError):
    """baresip failed or a wait timed out; the message holds the tail of its log."""


@dataclass
class BaresipAccount:
    """One SIP account (a baresip User-Agent). aor() is what baresip reports in events.
    ``port=0`` (with ``password=None, regint=0``): an account at baresip's own SIP address,
    for peer-to-peer calls that dial sip:USER@ip:sip_port directly."""

    user: str
    password: str | None
    port: int
    host: str = "127.0.0.1"
    transport: str = "udp"  # udp | tcp | tls
    regint: int = 60
    params: dict[str, str] = field(default_factory=lambda: {"audio_codecs": "PCMU"})

    def aor(self) -> str:
        return f"sip:{self.user}@{self.host}:{self.port}"

    def line(self) -> str:
        """The accounts-file line, e.g. <sip:1001@127.0.0.1:5060;transport=udp>;auth_pass=..."""
        parts = [f"<{self.aor()};transport={self.transport}>"]
        if self.password is not None:
            parts.append(f"auth_pass={self.password}")
        parts.append(f"regint={self.regint}")
        parts += [f"{k}={v}" for k, v in self.params.items()]
        return ";".join(parts)


def write_tone_wav(path: Path, seconds: float = 120.0, freq: float = 440.0) -> Path:
    """8 kHz mono 16-bit tone; long, because baresip ends the call when aufile reaches EOF."""
    if path.is_file():
        return path
    one_second = b"".join(
        struct.pack("<h", int(4000 * math.sin(2 * math.pi * freq * i / 8000))) for i in range(8000)
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(one_second * max(1, int(seconds)))
    return path


class Baresip:
    """One baresip process with its own config dir under workdir/name."""

    def __init__(
        self,
        workdir: Path,
        accounts: Sequence[BaresipAccount] = (),
        *,
        name: str = "baresip",
        listen_ip: str = "127.0.0.1",
        cafile: Path | None = None,
        certificate: Path | None = None,
        audio_file: Path | None = None,
        extra_modules: Sequence[str] = (),
        extra_config: Mapping[str, str] | None = None,
        allow_host_network: bool = False,
        sip_trace: bool = False,
    ) -> None:
        if not listen_ip.startswith("127."):
            raise ValueError("interop tests use 127.0.0.0/8 only")
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.accounts = list(accounts)
        self.listen_ip = listen_ip
        self._ports = ports.Reservation()
        self.sip_port = self._ports.block(2, align=1)[0]  # TLS listens on sip_port + 1
        self.ctrl_port = self._ports.port()
        self.rtp_ports = self._ports.block(20)
        self.cafile = cafile
        self.certificate = certificate
        self.audio_file = audio_file or write_tone_wav(self.dir / "tone.wav")
        self.extra_modules = list(extra_modules)
        self.extra_config = dict(extra_config or {})
        self.allow_host_network = allow_host_network
        self.sip_trace = sip_trace
        self.log_path = self.dir / "baresip.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self._consumed: set[int] = set()
        self._responses: dict[str, Event] = {}
        self._closed = False

    # -- configuration -------------------------------------------------------------------
    def _config_text(self) -> str:
        low, high = self.rtp_ports
        entries: list[tuple[str, str]] = [
            ("poll_method", "epoll"),
            ("sip_listen", f"{self.listen_ip}:{self.sip_port}"),
            ("audio_player", "aubridge,sink"),
            ("audio_source", f"aufile,{self.audio_file}"),
            ("audio_alert", "aubridge,sink"),
            ("module_path", MODULE_PATH),
            ("module", "g711.so"),
            ("module", "aubridge.so"),
            ("module", "aufile.so"),
            # before account.so: the accounts' audio_codecs lists only match codecs already
            # loaded (an unknown name is ignored and the account then offers every codec)
            *[("module", m) for m in self.extra_modules],
            ("module_tmp", "account.so"),
            ("module_app", "menu.so"),
            ("module", "ctrl_tcp.so"),
            ("ctrl_tcp_listen", f"127.0.0.1:{self.ctrl_port}"),
            ("rtp_ports", f"{low}-{high}"),
            ("dns_server", "127.0.0.1:53"),
        ]
        if self.cafile is not None:
            entries.append(("sip_cafile", str(self.cafile)))
        if self.certificate is not None:
            entries.append(("sip_certificate", str(self.certificate)))
        entries += list(self.extra_config.items())
        return "".join(f"{k:<20}{v}\n" for k, v in entries)

    def write_config(self) -> None:
        for account in self.accounts:
            if account.port == 0:  # an account at baresip's own address (peer to peer)
                account.port = self.sip_port
        (self.dir / "config").write_text(self._config_text(), encoding="utf-8")
        lines = "".join(a.line() + "\n" for a in self.accounts)
        (self.dir / "accounts").write_text(lines, encoding="utf-8")
        (self.dir / "contacts").write_text("", encoding="utf-8")

    # -- process -------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Baresip:
        """Write the config, start baresip and connect to ctrl_tcp (bounded)."""
        if netns.current() is None and not self.allow_host_network:
            raise BaresipError(
                "baresip must run in a private netns (mark the test with pytest.mark.netns)"
            )
        self.write_config()
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [BARESIP_BIN, "-f", str(self.dir), *(["-s"] if self.sip_trace else [])],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BaresipError(f"baresip exited with {self.proc.returncode}" + self._tail())
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BaresipError("baresip ctrl_tcp did not come up" + self._tail()) from None
                time.sleep(0.05)
        self._reader = threading.Thread(
            target=self._read_loop, args=(self._sock,), name=f"{self.name}-ctrl"
        )
        self._reader.daemon = True
        self._reader.start()
        return self

    def _read_loop(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while True:
                head, sep, rest = buf.partition(b":")
                if not sep or not head.isdigit() or len(rest) < int(head) + 1:
                    break
                size = int(head)
                self._dispatch(rest[:size])
                buf = rest[size + 1 :]  # skip the trailing ','
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _dispatch(self, payload: bytes) -> None:
        try:
            msg: Event = json.loads(payload.decode("utf-8", errors="replace"))
        except ValueError:
            log.warning("%s: bad ctrl_tcp payload %r", self.name, payload[:200])
            return
        log.debug("%s <- %s", self.name, msg)
        with self._cond:
            if msg.get("response"):
                self._responses[str(msg.get("token"))] = msg
            elif msg.get("event"):
                msg["received_at"] = time.monotonic()  # ours, for timing checks
                self._events.append(msg)
            self._cond.notify_all()

    def _tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return f"\n--- {self.log_path} (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    # -- commands ------------------------------------------------------------------------
    def command(self, command: str, params: str = "", timeout: float = 5.0) -> Event:
        """Send one ctrl_tcp command and wait for its response; raise if not ok."""
        if self._sock is None:
            raise BaresipError("baresip not started")
        token = f"t{next(_tokens)}"
        data = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(str(len(data)).encode() + b":" + data + b",")
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise BaresipError(f"no answer to {command!r} {params!r}" + self._tail())
                self._cond.wait(left)
            resp = self._responses.pop(token)
        if not resp.get("ok"):
            raise BaresipError(f"{command} {params}: {resp.get('data')!r}" + self._tail())
        return resp

    def register(self, account: BaresipAccount) -> None:
        """Add a User-Agent at run time (``uanew``); it registers when regint > 0."""
        self.accounts.append(account)
        self.command("uanew", account.line())

    def unregister(self, account: BaresipAccount) -> None:
        """Delete the User-Agent (``uadel``): baresip sends REGISTER with Expires 0."""
        self.command("uadel", account.aor())

    def reginfo(self) -> dict[str, str]:
        """{aor: state} from ``reginfo``; state is e.g. "OK", "ERR" or "zzz"."""
        data = str(self.command("reginfo").get("data", ""))
        states: dict[str, str] = {}
        for line in _ANSI.sub("", data).splitlines():
            m = re.match(r"^[> ]\s*(sips?:\S+)\s+(\S+)", line)
            if m:
                states[m.group(1)] = m.group(2)
        return states

    def wait_registered(self, account: BaresipAccount | None = None, timeout: float = 10.0) -> None:
        """Until the account (default: the first) is registered; raise on REGISTER_FAIL."""
        acct = account or self.accounts[0]
        aor = acct.aor()
        deadline = time.monotonic() + timeout
        while True:
            fail = self._take(
                lambda e: e.get("type") == "REGISTER_FAIL" and e.get("accountaor") == aor
            )
            if fail is not None:
                raise BaresipError(f"{aor}: REGISTER_FAIL {fail.get('param')!r}" + self._tail())
            if self._take(lambda e: e.get("type") == "REGISTER_OK" and e.get("accountaor") == aor):
                return
            if self.reginfo().get(aor) == "OK":
                return
            if time.monotonic() > deadline:
                raise BaresipError(f"{aor} not registered after {timeout:g}s" + self._tail())
            with self._cond:
                self._cond.wait(0.3)

    def dial(self, uri: str) -> Event:
        """``dial URI``: a new outgoing call, which becomes the current call. It does NOT hold
        the call that was current: call hold() first for a consultation call."""
        return self.command("dial", uri)

    def accept(self) -> Event:
        """``accept``: answer the ringing call. With another call established, baresip 1.0
        holds that call first (re-INVITE a=sendonly) and then answers (ua_hold_answer)."""
        return self.command("accept")

    def hangup(self, call_id: str | None = None) -> Event:
        """``hangup`` ends the CURRENT call (baresip 1.0 ignores a parameter): with
        ``call_id`` it is made current first. When another call is left, baresip makes it
        current and resumes it if it was on hold (re-INVITE a=sendrecv)."""
        if call_id is not None:
            self.select_call(call_id)
        return self.command("hangup")

    # -- calls: hold, transfer, switching (menu.so in-call commands) ---------------------
    # baresip 1.0.0 registers these only while a call exists (``help`` lists them then):
    # hold, resume, transfer, line, callfind, prevhold, prevresume, reinvite, mute, sndcode.
    # They act on the CURRENT call; select_call() picks one by its id (the SIP Call-ID,
    # which events carry as "id"). Blind transfer only: baresip 1.0 has no attended
    # transfer (no REFER with Replaces, no INVITE with Replaces), and as a transferee it
    # mangles a Refer-To with ?Replaces= (cut at the first ';', then "500 Call Error").

    def select_call(self, call_id: str) -> Event:
        """``callfind ID``: make the call with this Call-ID the current call."""
        return self.command("callfind", call_id)

    def hold(self, call_id: str | None = None) -> Event:
        """``hold``: re-INVITE with a=sendonly on the current (or given) call; baresip then
        stops sending audio on it."""
        if call_id is not None:
            self.select_call(call_id)
        return self.command("hold")

    def resume(self, call_id: str | None = None) -> Event:
        """``resume``: re-INVITE with a=sendrecv. It does not hold the other calls."""
        if call_id is not None:
            self.select_call(call_id)
        return self.command("resume")

    def transfer(self, uri: str, call_id: str | None = None) -> Event:
        """``transfer URI``: blind transfer, a REFER with ``Refer-To: URI`` (no Refer-Sub,
        no Referred-By) in the current (or given) call. baresip answers the NOTIFYs and
        closes the call itself (BYE, CALL_CLOSED "Call transfered") on the final NOTIFY
        with a 2xx sipfrag; on a failure sipfrag (e.g. "SIP/2.0 480") it reports
        TRANSFER_FAILED and hangs up as well (seen against pbx's transfer recall)."""
        if call_id is not None:
            self.select_call(call_id)
        return self.command("transfer", uri)

    def set_answermode(self, mode: str) -> Event:
        """``answermode manual|early|auto`` for the current User-Agent."""
        return self.command("answermode", mode)

    def calls(self) -> list[dict[str, Any]]:
        """``listcalls``: [{"line", "state", "on_hold", "peer", "current"}], e.g. state
        ESTABLISHED / INCOMING / OUTGOING / RINGING."""
        data = _ANSI.sub("", str(self.command("listcalls").get("data", "")))
        out: list[dict[str, Any]] = []
        for line in data.splitlines():
            m = re.match(r"^(>?)\s*\[line (\d+)\]\s+\S+\s+(\w+)\s+(\(on hold\))?\s*(\S+)", line)
            if m:
                out.append(
                    {
                        "current": m.group(1) == ">",
                        "line": int(m.group(2)),
                        "state": m.group(3),
                        "on_hold": bool(m.group(4)),
                        "peer": m.group(5),
                    }
                )
        return out

    def call_ids(self, type_: str = "CALL_ESTABLISHED") -> list[str]:
        """Call-IDs of the calls that had event ``type_``, in order (consumed or not)."""
        seen: list[str] = []
        for event in self.events:
            if event.get("type") == type_ and event.get("id") and event["id"] not in seen:
                seen.append(str(event["id"]))
        return seen

    # -- what the phone saw -----------------------------------------------------------------
    @property
    def sip_address(self) -> str:
        return f"{self.listen_ip}:{self.sip_port}"

    def sip_messages(self) -> list[SipMessage]:
        """Every SIP message baresip sent or received (needs ``sip_trace=True``)."""
        if not self.sip_trace:
            raise BaresipError("start baresip with sip_trace=True to read its messages")
        return read_baresip_trace(self.log_path, self.sip_address)

    def received(self, method: str, *, status: int | None = None) -> list[SipMessage]:
        """Requests ``method`` (or responses ``status`` to it) baresip received."""
        return select(self.sip_messages(), method, direction="received", status=status)

    def wait_received(
        self,
        method: str,
        timeout: float = 10.0,
        match: Callable[[SipMessage], bool] | None = None,
    ) -> SipMessage:
        """The first request ``method`` received (matching ``match``), within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.received(method):
                if match is None or match(msg):
                    return msg
            if time.monotonic() > deadline:
                got = [m.start for m in self.sip_messages() if m.direction == "received"]
                raise BaresipError(f"{self.name}: no {method} received in {timeout:g}s; got {got}")
            time.sleep(0.1)

    def recordings(self) -> list[Path]:
        """The dump-*-dec.wav files (what baresip decoded, one per call, named by the
        second the call's audio started) in ``snd_path``, oldest first."""
        folder = Path(self.extra_config.get("snd_path", self.dir))
        return sorted(folder.glob("dump-*-dec.wav"))

    def _take(self, match: Callable[[Event], bool]) -> Event | None:
        with self._cond:
            for i, event in enumerate(self._events):
                if i not in self._consumed and match(event):
                    self._consumed.add(i)
                    return event
        return None

    def wait_event(
        self,
        type_: str,
        timeout: float = 10.0,
        match: Callable[[Event], bool] | None = None,
    ) -> Event:
        """First not yet consumed event of this type (e.g. CALL_ESTABLISHED), within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            event = self._take(lambda e: e.get("type") == type_ and (match is None or match(e)))
            if event is not None:
                return event
            with self._cond:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    seen = [e.get("type") for e in self._events]
                    raise BaresipError(
                        f"no {type_} event in {timeout:g}s; seen {seen}" + self._tail()
                    )
                self._cond.wait(min(left, 0.5))

    @property
    def events(self) -> list[Event]:
        with self._cond:
            return list(self._events)

    def quit(self, timeout: float = 5.0) -> int:
        """``quit`` (baresip unregisters and exits); returns its exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            try:
                self.command("quit", timeout=timeout)
            except (BaresipError, OSError):
                log.warning("%s: quit command failed", self.name)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                raise BaresipError(f"baresip did not exit in {timeout:g}s" + self._tail()) from None
        self._close()
        return self.proc.returncode

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM then SIGKILL, by pid only; safe to call twice."""
        stop_process(self.proc, grace)
        self._close()

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader's recv()
            except OSError:
                pass
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        if self._reader is not None:
            self._reader.join(2)
            self._reader = None
        self._ports.release()

    def __enter__(self) -> Baresip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
