"""The ``pbx`` command line, run as a real subprocess against a data directory."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pbx import paths
from pbx.credentials import SecretBox, verify_admin_password
from pbx.serve import raise_open_files_limit

ROOT = Path(__file__).resolve().parents[2]


def pbx(
    *args: str, data: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("PBX_ADMIN_PASSWORD", None) if env is None else None
    return subprocess.run(
        [sys.executable, "-m", "pbx", *args, "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        input=stdin,
        cwd=ROOT,
    )


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pbx", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.startswith("pbx ")


def test_user_lifecycle_with_generated_password(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = pbx("user", "add", "1001", "--name", "Alice Anders", data=data)
    assert added.returncode == 0, added.stderr
    password = added.stdout.split("SIP password:")[1].strip()
    assert len(password) >= 16
    listed = pbx("user", "list", data=data)
    assert "1001" in listed.stdout and "Alice Anders" in listed.stdout
    shown = pbx("user", "show", "1001", data=data)
    assert f"password:     {password}" in shown.stdout
    assert "realm:        pbx" in shown.stdout
    # the password is encrypted at rest, and the key file is private
    key = data / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with sqlite3.connect(data / "pbx.sqlite") as db:
        (enc,) = db.execute("SELECT password_enc FROM credentials").fetchone()
        actions = [r[0] for r in db.execute("SELECT action FROM audit_log ORDER BY id")]
    assert password not in enc
    assert SecretBox(key).decrypt(enc) == password
    assert "user.add" in actions and "user.show_password" in actions
    changed = pbx("user", "passwd", "1001", "--password", "another-secret", data=data)
    assert changed.returncode == 0
    assert "password:     another-secret" in pbx("user", "show", "1001", data=data).stdout
    assert pbx("user", "del", "1001", data=data).returncode == 0
    assert "1001" not in pbx("user", "list", data=data).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("user", "add", "10 01"), "extension"),
        (("user", "add", "1001", "--password", "short"), "8 characters"),
        (("user", "show", "4242"), "no extension 4242"),
        (("user", "del", "4242"), "no extension 4242"),
        (("ban", "del", "127.0.0.9"), "not banned"),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    data = tmp_path / "data"
    assert pbx("user", "add", "1000", "--password", "good-password", data=data).returncode == 0
    result = pbx(*args, data=data)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_duplicate_extension_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pbx("user", "add", "1001", "--password", "good-password", data=data).returncode == 0
    again = pbx("user", "add", "1001", "--password", "good-password", data=data)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_import_is_all_or_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    good = "extension,password,name\n2001,pass-2001x,A\n2002,,B\n"
    result = pbx("user", "import", "-", data=data, stdin=good)
    assert result.returncode == 0, result.stderr
    assert "2002," in result.stdout  # the generated password is printed
    bad = "2003,pass-2003x\n20 04,pass-2004x\n"
    failed = pbx("user", "import", "-", data=data, stdin=bad)
    assert failed.returncode == 1 and "row 2" in failed.stderr
    assert "2003" not in pbx("user", "list", data=data).stdout


def test_admin_reset_password_and_db_migrate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pbx("db", "migrate", data=data).returncode == 0
    reset = pbx("admin", "reset-password", "--password", "new-admin-pw", data=data)
    assert reset.returncode == 0
    with sqlite3.connect(data / "pbx.sqlite") as db:
        hashed, must_change = db.execute(
            "SELECT password_hash, must_change_password FROM admins WHERE username = 'admin'"
        ).fetchone()
    assert hashed.startswith("$argon2id$")
    assert verify_admin_password(hashed, "new-admin-pw") and not must_change
    migrated = pbx("db", "migrate", data=data)
    assert "integrity: ok" in migrated.stdout


def test_status_without_a_running_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pbx("user", "add", "1001", "--password", "good-password", data=data)
    result = pbx("status", "--json", data=data)
    report = json.loads(result.stdout)
    assert report["running"] is False and report["registrations"] == []


def test_serve_stops_on_a_bad_config_key_and_names_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "pbx.toml").write_text("[sip]\nprot = 5060\n")
    result = pbx("serve", data=data)
    assert result.returncode == 2
    assert "sip.prot" in result.stderr


def test_open_files_limit_is_raised_to_the_hard_limit() -> None:
    import resource

    soft = raise_open_files_limit()
    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert soft == hard or hard == resource.RLIM_INFINITY


def test_resources_found_in_checkout_and_pyinstaller_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (paths.resource_root() / "config" / "pbx.toml").is_file()
    bundle = tmp_path / "bundle"
    (bundle / "config").mkdir(parents=True)
    (bundle / "config" / "pbx.toml").write_text("")
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    paths.resource_root.cache_clear()
    try:
        assert paths.resource_root() == bundle
    finally:
        paths.resource_root.cache_clear()


@pytest.mark.slow
def test_wheel_carries_config_templates_and_firmware(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("pbx-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pbx_data/config/pbx.toml" in names
    assert "pbx_data/config/feature_codes.toml" in names
    assert "pbx/py.typed" in names
    assert any(n.startswith("web/") for n in names)
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    found = subprocess.run(
        [sys.executable, "-c", "import pbx.paths as p; print(p.resource_root())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(target)),
        cwd=tmp_path,
    )
    assert found.stdout.strip() == str(target / "pbx_data")


def test_cdr_lists_records_and_exports_csv(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pbx("db", "migrate", data=data).returncode == 0
    with sqlite3.connect(data / "pbx.sqlite") as db:
        db.execute(
            "INSERT INTO call_records (call_id, caller, dialled, started_at, answered_at, "
            "ended_at, duration, disposition) VALUES ('c1', '1001', '1002', 10, 12, 42, 30, "
            "'answered')"
        )
    table = pbx("cdr", data=data)
    assert "1001" in table.stdout and "answered" in table.stdout and "30s" in table.stdout
    exported = pbx("cdr", "--csv", data=data).stdout.splitlines()
    assert exported[0].startswith("id,call_id,caller") and ",c1,1001,1002," in exported[1]
    assert pbx("cdr", "--limit", "0", data=data).returncode == 1
