"""The Flask application of the admin web UI (the REST API blueprint is web.api's).

Owns ``create_app``: security settings (Secure/HttpOnly/SameSite=Strict session cookie, CSRF on
every form through Flask-WTF's CSRFProtect, a 4 MB body limit raised only for the hold-music
upload, security headers with a strict Content Security
Policy), the per-request login check (session -> web.auth.Account in flask.g), the forced
password change, and the error pages. Templates come from the top-level ``templates/`` folder
(found with pbx.paths), static files from ``web/static/``. Must not import twisted: pbx.webhost
serves this app through twisted.web.wsgi.
"""

from __future__ import annotations

import importlib.util
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from pbx import paths
from web import accounts
from web.auth import ROLE_LABELS, can, current_account
from web.backend import WebContext
from web.errors import Forbidden, NotFound, ServiceError, Unauthorized, ValidationError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSION_HOURS = 8
# Endpoints reachable while a forced password change is pending.
_FORCED_CHANGE_OK = frozenset({"pages.password", "pages.logout", "pages.login", "static"})
_PUBLIC = frozenset({"pages.login", "static"})
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def create_app(ctx: WebContext, *, testing: bool = False) -> Flask:
    """The WSGI app for ``ctx``; ``testing`` only sets Flask's TESTING flag (CSRF stays on)."""
    app = Flask(
        "web",
        template_folder=str(paths.templates_dir()),
        static_folder=str(STATIC_DIR),
        static_url_path="/static",
    )
    app.config.update(
        SECRET_KEY=ctx.secret_key,
        TESTING=testing,
        SESSION_COOKIE_NAME="pbx_session",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        MAX_CONTENT_LENGTH=4 * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,
        WTF_CSRF_SSL_STRICT=True,
        JSON_SORT_KEYS=False,
    )
    app.extensions["pbx"] = ctx
    app.before_request(_upload_limit)  # before CSRFProtect's check reads the form
    csrf = CSRFProtect(app)
    app.before_request(_load_account)
    app.after_request(_security_headers)
    _register_errors(app)
    _register_template_helpers(app)

    from web.pages import bp as pages
    from web.pages.login import AttemptLimiter

    app.extensions["login_limiter"] = AttemptLimiter()
    app.register_blueprint(pages)
    _register_api(app, csrf)
    return app


def _register_api(app: Flask, csrf: CSRFProtect) -> None:
    """Mount web.api's blueprint at /api/v1 (bearer tokens, so exempt from the form CSRF)."""
    if importlib.util.find_spec("web.api") is None:  # not built yet
        log.debug("web.api not available; REST API not mounted")
        return
    from web.api import bp as api

    csrf.exempt(api)
    app.register_blueprint(api)


# Page endpoints that take larger uploads than MAX_CONTENT_LENGTH, and their limit.
UPLOAD_LIMITS = {"pages.site_music_upload": 51 * 1024 * 1024}  # a 50 MB file and the form


def _upload_limit() -> None:
    limit = UPLOAD_LIMITS.get(request.endpoint or "")
    if limit is not None:
        request.max_content_length = limit


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _load_account() -> Any:
    """Resolve the session to an account; force the password change when it is pending."""
    g.account = None
    if _is_api() or request.endpoint == "static":
        return None
    ctx: WebContext = g.get("ctx") or _ctx()
    username = session.get("u")
    if isinstance(username, str):
        account = accounts.load_account(ctx, username, session.get("fp"))
        if account is None:
            session.clear()
        else:
            g.account = account
            if account.must_change_password and request.endpoint not in _FORCED_CHANGE_OK:
                return redirect(url_for("pages.password"))
    if g.account is None and request.endpoint not in _PUBLIC and request.endpoint is not None:
        return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
    return None


def _ctx() -> WebContext:
    from flask import current_app

    ctx: WebContext = current_app.extensions["pbx"]
    return ctx


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, message=message), status


def _register_errors(app: Flask) -> None:
    @app.errorhandler(Unauthorized)
    def unauthorized(exc: Unauthorized) -> Any:
        return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))

    @app.errorhandler(Forbidden)
    def forbidden(exc: Forbidden) -> Any:
        return _error_page(403, "Not allowed", exc.message)

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Any:
        return _error_page(404, "Not found", exc.message)

    @app.errorhandler(ValidationError)
    def invalid(exc: ValidationError) -> Any:
        return _error_page(422, "Invalid input", exc.message)

    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError) -> Any:
        return _error_page(exc.status, "Cannot do that", exc.message)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Any:
        return _error_page(
            400,
            "Form expired",
            "The form was missing its security token or it expired. Reload the page and retry.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if _is_api():
            return exc
        return _error_page(exc.code or 500, exc.name, exc.description or "")


def _register_template_helpers(app: Flask) -> None:
    @app.context_processor
    def inject() -> dict[str, Any]:
        return {"account": current_account(), "can": can, "role_labels": ROLE_LABELS}

    @app.template_filter("when")
    def when(value: float | None) -> str:
        if value is None:
            return ""
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")

    @app.template_filter("day")
    def day(value: float | None) -> str:
        if value is None:
            return ""
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d")

    @app.template_filter("seconds")
    def seconds(value: float | None) -> str:
        if value is None:
            return ""
        total = int(value)
        hours, rest = divmod(total, 3600)
        return (
            f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
            if hours
            else f"{rest // 60}:{rest % 60:02d}"
        )

    @app.template_filter("bytes")
    def size(value: float | None) -> str:
        if value is None:
            return ""
        amount = float(value)
        for unit in ("B", "kB", "MB", "GB", "TB"):
            if amount < 1024 or unit == "TB":
                return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
            amount /= 1024
        return ""
