"""pyVoIP 1.6.8 softphone for Python-level interop tests (UDP only, MD5 digest, PCMU).

Owns: one ``pyVoIP.VoIP.VoIPPhone`` on 127.0.0.1 with reserved SIP/RTP ports, started in a
helper thread (``VoIPPhone.start()`` blocks until the first REGISTER finishes and does not
always raise on failure: it may keep retrying in its own timer threads), with bounded
start/stop and a registered-or-failed wait.

pyVoIP is GPLv3 and thread/blocking-socket based: tests only, never imported by ``pbx``.
Limits (shared/design/dependencies.md): UDP only, no TLS/TCP/SRTP, offers PCMU +
telephone-event only, cannot send RFC 2833 DTMF. Must not import anything from ``pbx``.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from . import ports

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # pyVoIP imports audioop
    from pyVoIP.VoIP import PhoneStatus, VoIPCall, VoIPPhone

log = logging.getLogger(__name__)

__all__ = ["PhoneStatus", "PyVoipError", "PyVoipPhone"]


class PyVoipError(RuntimeError):
    """The phone did not register / stop in time, or pyVoIP raised."""


class PyVoipPhone:
    """A pyVoIP phone registered to server_ip:server_port as user."""

    def __init__(
        self,
        server_port: int,
        user: str,
        password: str,
        *,
        server_ip: str = "127.0.0.1",
        my_ip: str = "127.0.0.1",
        register_timeout: int = 5,
        call_callback: Callable[[VoIPCall], Any] | None = None,
    ) -> None:
        if not (server_ip.startswith("127.") and my_ip.startswith("127.")):
            raise ValueError("interop tests use 127.0.0.0/8 only")
        self._ports = ports.Reservation()
        self.sip_port = self._ports.port()
        self.rtp_ports = self._ports.block(20)
        low, high = self.rtp_ports
        self.phone = VoIPPhone(
            server_ip,
            server_port,
            user,
            password,
            myIP=my_ip,
            callCallback=call_callback,
            sipPort=self.sip_port,
            rtpPortLow=low,
            rtpPortHigh=high,
        )
        self.phone.sip.register_timeout = register_timeout
        self.user = user

    def status(self) -> PhoneStatus:
        return self.phone.get_status()

    def _in_thread(self, func: Callable[[], None], timeout: float, what: str) -> None:
        errors: list[BaseException] = []

        def target() -> None:
            try:
                func()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                errors.append(exc)

        thread = threading.Thread(target=target, name=f"pyvoip-{what}-{self.user}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise PyVoipError(f"pyVoIP {what}() still blocked after {timeout:g}s")
        if errors:
            raise PyVoipError(f"pyVoIP {what}() failed: {errors[0]!r}") from errors[0]

    def start(self, timeout: float = 15.0) -> None:
        """Start and wait until REGISTERED; on failure stop the phone and raise."""
        deadline = time.monotonic() + timeout
        try:
            self._in_thread(self.phone.start, timeout, "start")
            while self.status() != PhoneStatus.REGISTERED:
                if self.status() in (PhoneStatus.FAILED, PhoneStatus.INACTIVE):
                    raise PyVoipError(f"pyVoIP {self.user}: registration failed")
                if time.monotonic() > deadline:
                    raise PyVoipError(f"pyVoIP {self.user}: {self.status()} after {timeout:g}s")
                time.sleep(0.05)
        except PyVoipError:
            self.stop()
            raise

    def wait_status(self, status: PhoneStatus, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.status() != status:
            if time.monotonic() > deadline:
                raise PyVoipError(f"pyVoIP {self.user}: {self.status()}, not {status}")
            time.sleep(0.05)

    def call(self, number: str) -> VoIPCall:
        """Outgoing call (returns at once; poll call.state)."""
        return self.phone.call(number)

    def stop(self, timeout: float = 10.0) -> None:
        """Hang up calls, unregister (Expires: 0) and close sockets; bounded."""
        try:
            if self.status() != PhoneStatus.INACTIVE or self.phone.sip.NSD:
                self._in_thread(self.phone.stop, timeout, "stop")
        finally:
            self._ports.release()

    def __enter__(self) -> PyVoipPhone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
