"""Exceptions raised by pbx.store.

Owns the store's error hierarchy. Must not import sqlite3, sqlite_utils or twisted, so that any
layer may catch these without depending on the database.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class NotFound(StoreError):
    """The row the caller asked to change or delete does not exist."""


class AlreadyExists(StoreError):
    """The row the caller asked to create already exists."""


class InUse(StoreError):
    """The row the caller asked to delete is still referenced (e.g. a site with users)."""
