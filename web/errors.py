"""Errors raised by web.services and web.auth; pages and the REST API turn them into answers.

Owns the error hierarchy of the web layer. Must not import flask, twisted or the store, so the
services stay usable (and testable) without a request.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: something the caller asked for cannot be done; the message says why."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(ServiceError):
    """Bad input in one field; nothing was saved."""

    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Unauthorized(ServiceError):
    """No (valid) login or token."""

    status = 401


class Forbidden(ServiceError):
    """Logged in, but the role or site does not allow this."""

    status = 403


class NotFound(ServiceError):
    """The object named does not exist (or is outside the caller's site)."""

    status = 404


class Conflict(ServiceError):
    """The change clashes with existing data (duplicate name, object still in use)."""

    status = 409
