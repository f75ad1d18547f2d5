"""Login, logout and password change pages, with per-address login rate limiting.

Owns the session keys ("u" = username, "fp" = password fingerprint) and the in-memory limit of
login attempts per client address (on top of the per-account lock-out in web.accounts).
Must not import twisted or the store.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from web import accounts
from web.errors import Unauthorized, ValidationError
from web.pages import actor, bp, ctx

ATTEMPTS_PER_MINUTE = 10


class AttemptLimiter:
    """At most ``limit`` attempts per address in a sliding window (thread-safe)."""

    def __init__(self, limit: int = ATTEMPTS_PER_MINUTE, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._seen) > 10_000:  # forget idle addresses; bounded memory
                self._seen = {a: q for a, q in self._seen.items() if q and q[-1] > now - 60}
            attempts = self._seen.setdefault(address, deque())
            while attempts and attempts[0] <= now - self.window:
                attempts.popleft()
            if len(attempts) >= self.limit:
                return False
            attempts.append(now)
            return True


def limiter() -> AttemptLimiter:
    """The app's limiter (one per app, created by web.app.create_app)."""
    found: AttemptLimiter = current_app.extensions["login_limiter"]
    return found


def _safe_next(target: str | None) -> str:
    """Only local paths: never redirect to another site after login."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.dashboard")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return url_for("pages.dashboard")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    address = request.remote_addr or ""
    username = request.form.get("username", "")
    if not limiter().allow(address):
        message = "Too many login attempts from your address. Wait a minute and try again."
        return render_template("login.html", error=message, username=username), 429
    try:
        account, fingerprint = accounts.authenticate(
            ctx(), username, request.form.get("password", ""), address=address
        )
    except Unauthorized as exc:
        return render_template("login.html", error=exc.message, username=username), 401
    session.clear()
    session.permanent = True
    session["u"] = account.username
    session["fp"] = fingerprint
    if account.must_change_password:
        flash("Choose a new password before you continue.", "warn")
        return redirect(url_for("pages.password"))
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    session.clear()
    flash("You are logged out.", "ok")
    return redirect(url_for("pages.login"))


@bp.route("/account/password", methods=["GET", "POST"])
def password() -> Response | str | tuple[str, int]:
    account = actor()
    if request.method == "GET":
        return render_template("password.html", forced=account.must_change_password)
    try:
        fingerprint = accounts.change_password(
            ctx(),
            account,
            request.form.get("current_password", ""),
            request.form.get("new_password", ""),
            request.form.get("confirm_password", ""),
        )
    except ValidationError as exc:
        page = render_template(
            "password.html", forced=account.must_change_password, error=exc.message, field=exc.field
        )
        return page, 422
    session["fp"] = fingerprint
    flash("Your password was changed.", "ok")
    return redirect(url_for("pages.dashboard"))
