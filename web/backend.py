"""What the web app needs from the running server: the store, live state and configuration.

Owns the ``Live`` protocol (implemented by pbx.webhost on the Twisted side, and by a static
double in tests), :class:`CallCommandError` (what its call commands raise) and the
``WebContext`` handed to ``web.app.create_app``. Must not import twisted or flask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pbx.config import Config
from pbx.store.db import Store


class CallCommandError(Exception):
    """A call command the running server refused: ``status`` is the HTTP status to answer
    (404 no such call or leg, 409 not possible in its state or refused now, 400 a bad
    request), ``error_id`` says which (e.g. "not_found", "gone", "wrong_state", "refused")."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message


class Live(Protocol):
    """Live state of the running server; methods are called from WSGI threads."""

    def registrations(self) -> list[dict]: ...

    # extension, contact, user_agent, address, transport, expires_in

    def active_calls(self) -> list[dict]: ...

    # as Switch.active_calls(): call_id, caller, dialled, state, duration, codecs

    def health(self) -> dict: ...

    # uptime_s, cpu_percent, memory_rss, loop_lag_p99_ms, disk_free, db_size

    def trunks(self) -> list[dict]: ...

    # trunk registrations: name, state, since, reason, expires, retry_in

    def settings_changed(self) -> None: ...  # tell the running server to re-read live settings

    def feature_codes(self) -> list[dict]: ...

    # the running server's feature-code table: key, code ("" when off), name, description

    def music_changed(self, site_id: int) -> None: ...  # a site's hold music file changed

    # Call commands; each raises CallCommandError when the server refuses.

    def originate(self, from_extension: str, to: str) -> dict: ...

    # click-to-call: ring the user's own phone, then ``to``; {"call": ID, "leg": LEG_ID}

    def hang_up_call(self, call_id: str) -> None: ...

    def transfer_call(self, call_id: str, to: str, leg_id: str | None) -> dict: ...

    # blind transfer of the party on leg ``leg_id`` (None: the callee) to ``to``


@dataclass
class WebContext:
    """Everything the Flask app and the services work with."""

    store: Store
    live: Live
    data_dir: Path
    config: Config
    secret_key: bytes
    generated_admin_password: bool = False  # unused by the app; informational
