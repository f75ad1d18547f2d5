"""Secrets: SIP passwords encrypted at rest, digest HA1 values, admin password hashes.

Owns the Fernet key file (``SecretBox``), password generation and argon2id hashing of admin
passwords. Combines crypto with pbx.sip.auth's digest hashing into store Credentials.
All crypto comes from ``cryptography`` and ``argon2-cffi``; nothing is hand-rolled.
Must not import twisted, flask, sqlite3 or sqlite_utils.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import string
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

from pbx.sip.auth import compute_ha1
from pbx.store.credentials import Credentials

log = logging.getLogger(__name__)

# No look-alikes (0/O/o, 1/l/I) so passwords can be read out or typed into a phone.
_SIP_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0Oo1lI")
_MIN_SIP_PASSWORD = 8
_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile


class KeyFileError(Exception):
    """The secret key file is missing, unreadable, malformed or too widely readable."""


def _create_key_file(key_path: Path) -> None:
    """Write a fresh key to ``key_path`` atomically; never overwrite an existing file.

    The key goes to a private temp file (O_CREAT|O_EXCL, 0600) which is then hard-linked into
    place: a crash never leaves a half-written key behind and a concurrent creator wins cleanly.
    """
    key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = key_path.with_name(f".{key_path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, Fernet.generate_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, key_path)
        log.info("created secret key file %s", key_path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _read_key_file(key_path: Path) -> bytes:
    fd = os.open(key_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"secret key file {key_path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"secret key file {key_path} has mode {stat.S_IMODE(st.st_mode):04o}: it must "
                f"not be readable by group or others; run: chmod 600 {key_path}"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    return data.strip()


class SecretBox:
    """Symmetric encryption (Fernet) of SIP passwords with a key kept in a 0600 file."""

    def __init__(self, key_path: Path) -> None:
        key_path = Path(key_path)
        if not key_path.exists():
            _create_key_file(key_path)
        key = _read_key_file(key_path)
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise KeyFileError(f"secret key file {key_path} does not hold a Fernet key") from exc

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt a token from ``encrypt``; ValueError if it is corrupt or from another key."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise ValueError("cannot decrypt: corrupt token or a different key") from exc


def generate_sip_password(length: int = 16) -> str:
    """A random password of letters and digits, without look-alike characters.

    Always contains at least one lowercase letter, one uppercase letter and one digit, so that
    phones or provisioning tools with complexity rules accept it.
    """
    if length < _MIN_SIP_PASSWORD:
        raise ValueError(f"SIP passwords must have at least {_MIN_SIP_PASSWORD} characters")
    while True:
        password = "".join(secrets.choice(_SIP_ALPHABET) for _ in range(length))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
        ):
            return password


def make_credentials(
    box: SecretBox, extension: str, realm: str, password: str, now: float
) -> Credentials:
    """Credentials for ``extension``: the encrypted password plus MD5 and SHA-256 HA1.

    The digest username is the extension (RFC 7616 §3.4.2 / RFC 8760 §2).
    """
    return Credentials(
        extension=extension,
        realm=realm,
        password_enc=box.encrypt(password),
        ha1_md5=compute_ha1(extension, realm, password, "MD5"),
        ha1_sha256=compute_ha1(extension, realm, password, "SHA-256"),
        updated_at=now,
    )


def hash_admin_password(pw: str) -> str:
    """An argon2id PHC string for ``pw``."""
    return _hasher.hash(pw)


def verify_admin_password(hash: str, pw: str) -> bool:
    """True if ``pw`` matches ``hash``; False on mismatch or a malformed hash."""
    try:
        return _hasher.verify(hash, pw)
    except (VerificationError, InvalidHashError):
        return False


def admin_password_needs_rehash(hash: str) -> bool:
    """True if ``hash`` was made with weaker parameters than the current ones."""
    return _hasher.check_needs_rehash(hash)


def generate_admin_password() -> str:
    """A strong random admin password (20 URL-safe characters, 120 bits)."""
    return secrets.token_urlsafe(15)
