"""linphone-daemon driver: a second, independent real SIP user agent scripted over stdin.

Owns: a fresh HOME (with ``.local/share/linphone``: without it the daemon opens no SIP
listening point and REGISTER never leaves) and a fresh copy of the rc file per start (linphone
rewrites its config), the daemon process with its log in DIR/linphone.log, the line protocol
(command echo, ``Status: Ok|Error`` block, ``Key: Value`` lines, ``daemon-linphone>`` prompt;
asynchronous ``Event-type:`` blocks collected as events), and the verbs register /
register_status / wait_registered / unregister / call / terminate / wait_event / quit; for
calls with more than one party: wait_incoming / answer (pauses the running call) / pause /
resume / transfer (blind REFER) / transfer_attended (REFER with Replaces, the one installed
peer that does it) / call_state, and the SIP messages of its log (sip_messages /
wait_received).

Pitfalls (shared/design/dependencies.md 4.11): ``call-stats`` during a call crashes the daemon
with SIGSEGV, so command() refuses it. linphone puts 127.0.0.1 into its SDP correctly, so it
does not need a private netns (it works inside one too).

Must not import anything from ``pbx``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import ports
from .procs import stop_process
from .sip_message import SipMessage, read_linphone_log, select

log = logging.getLogger(__name__)

DAEMON_BIN = "linphone-daemon"
PROMPT = "daemon-linphone>"
_FORBIDDEN = ("call-stats",)
_FIELD = re.compile(r"^([A-Za-z][\w-]*): ?(.*)$")


class LinphoneError(RuntimeError):
    """The daemon failed, answered Status: Error, or a wait timed out (message has log tail)."""


@dataclass
class LinphoneResponse:
    """One command's answer: status ("Ok"/"Error"), its Key: Value fields, the raw text."""

    status: str
    fields: dict[str, str] = field(default_factory=dict)
    text: str = ""
    records: list[dict[str, str]] = field(default_factory=list)  # one dict per blank-line block

    @property
    def ok(self) -> bool:
        return self.status == "Ok"


def _sections(text: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Split daemon output into (response records, events).

    A response starts at ``Status:``; blank lines split it into records (register-status ALL
    gives one per Id). An event starts at ``Event-type:`` and takes every Key: Value line up to
    the next section (its ``Event:``/``Id:`` lines follow a blank line). Command echoes and
    free text (help output) are ignored.
    """
    records: list[dict[str, str]] = []
    events: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    in_event = False
    for line in text.splitlines():
        m = _FIELD.match(line.strip())
        if m is None:
            if not in_event and current:
                current = {}
                records.append(current)
            continue
        key, value = m.group(1), m.group(2)
        if key == "Event-type":
            current, in_event = {key: value}, True
            events.append(current)
        elif key == "Status":
            current, in_event = {key: value}, False
            records.append(current)
        elif current is not None:
            current[key] = value
    return [r for r in records if r], events


class Linphone:
    """One linphone-daemon with its own HOME, rc and SIP/RTP ports under workdir/name."""

    def __init__(
        self, workdir: Path, *, name: str = "linphone", sip_options: dict[str, str] | None = None
    ) -> None:
        self.sip_options = dict(sip_options or {})  # extra [sip] keys, e.g. use_info=1
        self.dir = Path(workdir) / name
        self.home = self.dir / "home"
        self.name = name
        self._ports = ports.Reservation()
        self.sip_port = self._ports.port()
        self.rtp_ports = self._ports.block(20)
        self.rc_path = self.dir / "linphonerc"
        self.log_path = self.dir / "linphone.log"
        self.console_path = self.dir / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._buf = ""
        self._eof = False
        self.events: list[dict[str, str]] = []
        self._consumed: set[int] = set()

    def _rc_text(self) -> str:
        low, high = self.rtp_ports
        return (
            "[sip]\n"
            f"sip_port={self.sip_port}\nsip_tcp_port=0\nsip_tls_port=0\nuse_ipv6=0\n"
            + "".join(f"{key}={value}\n" for key, value in self.sip_options.items())
            + "[rtp]\n"
            f"audio_rtp_port={low}-{high}\n"
            "[sound]\necho_cancellation=0\necho_canceller=0\n"
            "[net]\nfirewall_policy=0\n"
        )

    def start(self, timeout: float = 10.0) -> Linphone:
        """Fresh HOME + rc, start the daemon, wait for its first prompt."""
        (self.home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rc_path.write_text(self._rc_text(), encoding="utf-8")
        env = dict(os.environ, HOME=str(self.home))
        args = [DAEMON_BIN, "--config", str(self.rc_path), "--log", str(self.log_path)]
        args.append("--disable-stats-events")
        self.proc = subprocess.Popen(
            args,
            cwd=self.dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_loop, name=f"{self.name}-stdout")
        self._reader.daemon = True
        self._reader.start()
        self._take_until_prompt(timeout, "startup")
        return self

    def _read_loop(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        with self.console_path.open("a", encoding="utf-8") as console:
            while True:
                try:
                    chunk = os.read(out.fileno(), 65536)
                except (OSError, ValueError):  # closed under us by _cleanup()
                    chunk = b""
                if not chunk:
                    break
                text = chunk.decode("utf-8", errors="replace")
                console.write(text)
                console.flush()
                with self._cond:
                    self._buf += text
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _take_until_prompt(self, timeout: float, what: str) -> str:
        """Wait for the next prompt; return the text before it and drop both from the buffer."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while PROMPT not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise LinphoneError(f"no prompt after {what!r}" + self._tail())
                self._cond.wait(left)
            text, _, self._buf = self._buf.partition(PROMPT)
            return text

    def _tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.console_path, self.log_path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            parts.append(f"\n--- {path} (tail) ---\n" + "\n".join(text[-lines:]))
        return "".join(parts)

    def command(self, line: str, timeout: float = 5.0) -> LinphoneResponse:
        """Send one command line and parse its answer; Event-type blocks go to self.events."""
        if line.split(" ", 1)[0] in _FORBIDDEN:
            raise ValueError(f"{line!r} crashes linphone-daemon (SIGSEGV); never send it")
        if self.proc is None or self.proc.stdin is None or self.proc.poll() is not None:
            raise LinphoneError("linphone-daemon is not running" + self._tail())
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        return self._parse(self._take_until_prompt(timeout, line))

    def _parse(self, raw: str) -> LinphoneResponse:
        records, events = _sections(raw)
        with self._cond:
            self.events.extend(events)
        fields: dict[str, str] = {}
        for rec in records:
            fields.update(rec)
        resp = LinphoneResponse(fields.get("Status", ""), fields, raw, records)
        if not resp.ok:
            raise LinphoneError(f"{raw.strip()!r}" + self._tail())
        return resp

    def wait_event(
        self, event: str, timeout: float = 10.0, call_id: str | None = None
    ) -> dict[str, str]:
        """First not yet consumed event with ``Event: <event>`` (e.g. LinphoneCallConnected).

        The daemon prints events after its prompt, so this polls with the harmless
        ``version`` command to collect them.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                for i, ev in enumerate(self.events):
                    if i in self._consumed or ev.get("Event") != event:
                        continue
                    if call_id is None or ev.get("Id") == call_id:
                        self._consumed.add(i)
                        return ev
            if time.monotonic() > deadline:
                seen = [e.get("Event") for e in self.events]
                raise LinphoneError(f"no {event} in {timeout:g}s; seen {seen}" + self._tail())
            time.sleep(0.2)
            self.command("version")

    def register(
        self,
        user: str,
        password: str | None,
        port: int,
        host: str = "127.0.0.1",
        transport: str = "udp",
        realm: str | None = None,
    ) -> int:
        """register IDENTITY PROXY PASSWORD USERID REALM; returns the registration id."""
        if not host.startswith("127."):
            raise ValueError("interop tests use 127.0.0.0/8 only")
        identity = f"sip:{user}@{host}:{port}"
        proxy = f"sip:{host}:{port};transport={transport}"
        resp = self.command(
            f"register {identity} {proxy} {password or 'NULL'} {user} {realm or 'NULL'}"
        )
        return int(resp.fields["Id"])

    def register_status(self, reg_id: int | str = "ALL") -> dict[int, str]:
        """{id: state}, state e.g. LinphoneRegistrationOk / Progress / Failed / Cleared."""
        resp = self.command(f"register-status {reg_id}")
        return {int(r["Id"]): r.get("State", "") for r in resp.records if "Id" in r}

    def wait_registered(self, reg_id: int, timeout: float = 10.0) -> None:
        """Poll register-status until Ok; raise at once on LinphoneRegistrationFailed."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.register_status(reg_id).get(reg_id, "")
            if state == "LinphoneRegistrationOk":
                return
            if state == "LinphoneRegistrationFailed":
                raise LinphoneError(f"registration {reg_id} failed" + self._tail())
            time.sleep(0.2)
        raise LinphoneError(
            f"registration {reg_id} still {state!r} after {timeout:g}s" + self._tail()
        )

    def unregister(self, reg_id: int | str = "ALL") -> None:
        self.command(f"unregister {reg_id}")

    def call(self, uri: str) -> str:
        """Start an outgoing call; returns its call id (events carry it as ``Id``)."""
        host = uri.split(":", 1)[-1].rsplit("@", 1)[-1]
        if not host.startswith("127."):
            raise ValueError("interop tests call 127.0.0.0/8 only")
        return self.command(f"call {uri}").fields["Id"]

    def terminate(self, call_id: str | None = None) -> None:
        self.command("terminate" + (f" {call_id}" if call_id else ""))

    # -- calls with more than one party (checked peer to peer, tests/interop/
    # test_transfer_peers.py). Ids are the daemon's call ids ("1", "2"...), not Call-IDs.

    def wait_incoming(self, timeout: float = 10.0) -> str:
        """The id of the next incoming call (event LinphoneCallIncomingReceived)."""
        return self.wait_event("LinphoneCallIncomingReceived", timeout)["Id"]

    def answer(self, call_id: str) -> None:
        """``answer ID``. With another call running, liblinphone pauses that one first
        (re-INVITE a=sendonly; its state becomes LinphoneCallPaused)."""
        self.command(f"answer {call_id}")

    def pause(self, call_id: str) -> None:
        """``call-pause ID``: hold, a re-INVITE with a=sendonly (LinphoneCallPaused)."""
        self.command(f"call-pause {call_id}")

    def resume(self, call_id: str) -> None:
        """``call-resume ID``: a re-INVITE with a=sendrecv (LinphoneCallStreamsRunning)."""
        self.command(f"call-resume {call_id}")

    def transfer(self, call_id: str, uri: str) -> None:
        """``call-transfer ID URI``: blind transfer, a REFER with ``Refer-To: URI`` and
        ``Referred-By`` in that call; linphone ends the call itself once the NOTIFY says
        the transfer target answered."""
        self.command(f"call-transfer {call_id} {uri}")

    def transfer_attended(self, call_id: str, to_call_id: str) -> None:
        """``call-transfer ID OTHER_ID``: attended transfer. A REFER in call ``call_id``
        whose Refer-To is the remote address of call ``to_call_id`` (for a call linphone
        placed: the dialled URI WITHOUT its port) with
        ``?Replaces=CALLID%3bfrom-tag%3dOURS%3bto-tag%3dTHEIRS`` (lower-case escapes,
        from-tag first), e.g. ``<sip:4003@127.0.0.1?Replaces=abc%3bfrom-tag%3d..>``."""
        self.command(f"call-transfer {call_id} {to_call_id}")

    def call_state(self, call_id: str) -> str:
        """``call-status ID`` -> e.g. LinphoneCallStreamsRunning / LinphoneCallPaused;
        "" once the call is gone (the daemon answers Status: Error)."""
        try:
            return self.command(f"call-status {call_id}").fields.get("State", "")
        except LinphoneError:
            return ""

    def sip_messages(self) -> list[SipMessage]:
        """Every SIP message the daemon sent or received, from its log."""
        return read_linphone_log(self.log_path)

    def wait_received(
        self,
        method: str,
        timeout: float = 10.0,
        match: Callable[[SipMessage], bool] | None = None,
    ) -> SipMessage:
        """The first request ``method`` received (matching ``match``), within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in select(self.sip_messages(), method, direction="received"):
                if match is None or match(msg):
                    return msg
            if time.monotonic() > deadline:
                raise LinphoneError(f"no {method} received in {timeout:g}s" + self._tail())
            time.sleep(0.2)

    def quit(self, timeout: float = 5.0) -> int:
        """``quit`` and wait for the exit status (stop() if it hangs)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                raise LinphoneError(
                    f"linphone-daemon did not quit in {timeout:g}s" + self._tail()
                ) from None
        self._cleanup()
        return self.proc.returncode

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM then SIGKILL, by pid only; safe to call twice."""
        stop_process(self.proc, grace)
        self._cleanup()

    def _cleanup(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(2)
            self._reader = None
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self._ports.release()

    def __enter__(self) -> Linphone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
