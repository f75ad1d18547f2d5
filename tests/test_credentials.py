"""pbx.credentials: key file handling, encryption, digest HA1 values, admin passwords."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from pbx.credentials import (
    KeyFileError,
    SecretBox,
    admin_password_needs_rehash,
    generate_admin_password,
    generate_sip_password,
    hash_admin_password,
    make_credentials,
    verify_admin_password,
)


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    key = tmp_path / "secrets" / "pbx.key"
    box = SecretBox(key)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    token = box.encrypt("s3cret")
    assert token != "s3cret"
    assert SecretBox(key).decrypt(token) == "s3cret"
    assert [p.name for p in key.parent.iterdir()] == ["pbx.key"]  # no temp file left


def test_key_file_created_with_permissive_umask_is_still_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        SecretBox(tmp_path / "pbx.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "pbx.key").st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_key_is_refused(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "pbx.key"
    SecretBox(key)
    os.chmod(key, mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        SecretBox(key)


def test_malformed_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "pbx.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key")
    os.close(fd)
    with pytest.raises(KeyFileError, match="Fernet"):
        SecretBox(key)


def test_concurrent_creation_yields_one_key(tmp_path: Path) -> None:
    key = tmp_path / "pbx.key"
    boxes: list[SecretBox] = []
    threads = [threading.Thread(target=lambda: boxes.append(SecretBox(key))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    token = boxes[0].encrypt("x")
    assert all(b.decrypt(token) == "x" for b in boxes)


def test_token_from_another_key_is_rejected(tmp_path: Path) -> None:
    token = SecretBox(tmp_path / "a.key").encrypt("s3cret")
    with pytest.raises(ValueError):
        SecretBox(tmp_path / "b.key").decrypt(token)
    with pytest.raises(ValueError):
        SecretBox(tmp_path / "a.key").decrypt("garbage")


def test_sip_password_alphabet_and_strength() -> None:
    passwords = {generate_sip_password() for _ in range(200)}
    assert len(passwords) == 200
    for pw in passwords:
        assert len(pw) == 16 and pw.isalnum()
        assert not set(pw) & set("0Oo1lI")
        assert any(c.isdigit() for c in pw) and any(c.isupper() for c in pw)
        assert any(c.islower() for c in pw)
    assert len(generate_sip_password(24)) == 24
    with pytest.raises(ValueError):
        generate_sip_password(4)


def test_make_credentials_encrypts_and_hashes(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "pbx.key")
    creds = make_credentials(box, "100", "pbx.local", "pw", now=9.0)
    assert creds.extension == "100" and creds.realm == "pbx.local" and creds.updated_at == 9.0
    assert box.decrypt(creds.password_enc) == "pw"
    assert creds.ha1_md5 == hashlib.md5(b"100:pbx.local:pw").hexdigest()
    assert creds.ha1_sha256 == hashlib.sha256(b"100:pbx.local:pw").hexdigest()


def test_admin_password_hash_is_argon2id_and_verifies() -> None:
    pw = generate_admin_password()
    assert len(pw) >= 20
    h = hash_admin_password(pw)
    assert h.startswith("$argon2id$")
    assert verify_admin_password(h, pw)
    assert not verify_admin_password(h, pw + "x")
    assert not verify_admin_password("not-a-hash", pw)
    assert not admin_password_needs_rehash(h)
    assert generate_admin_password() != pw
