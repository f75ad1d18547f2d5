"""Versioned schema of the pbx database.

Owns every CREATE/ALTER statement. Migrations are registered, in order, on one
``sqlite_utils.migrations.Migrations("pbx")`` set; each runs inside its own transaction together
with the record of it having been applied (table ``_sqlite_migrations``), so a crash mid-way
leaves it pending. Never edit a released migration: append a new one.
Must not import twisted or anything outside pbx.store.
"""

from __future__ import annotations

import logging

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

log = logging.getLogger(__name__)

MIGRATIONS = Migrations("pbx")


def _run(db: Database, statements: list[str]) -> None:
    for sql in statements:
        db.execute(sql)


@MIGRATIONS(name="m001_core")
def _m001_core(db: Database) -> None:
    _run(
        db,
        [
            """CREATE TABLE users (
                extension TEXT PRIMARY KEY,
                display_name TEXT NOT NULL,
                enabled INTEGER NOT NULL DEFAULT 1,
                created_at REAL NOT NULL
            )""",
            """CREATE TABLE credentials (
                extension TEXT PRIMARY KEY
                    REFERENCES users(extension) ON DELETE CASCADE,
                realm TEXT NOT NULL,
                password_enc TEXT NOT NULL,
                ha1_md5 TEXT NOT NULL,
                ha1_sha256 TEXT NOT NULL,
                updated_at REAL NOT NULL
            )""",
            "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """CREATE TABLE admins (
                username TEXT PRIMARY KEY,
                password_hash TEXT NOT NULL,
                must_change_password INTEGER NOT NULL,
                created_at REAL NOT NULL
            )""",
            """CREATE TABLE audit_log (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at REAL NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT NOT NULL,
                old TEXT,
                new TEXT
            )""",
            "CREATE INDEX audit_log_actor ON audit_log(actor, id)",
            "CREATE INDEX audit_log_target ON audit_log(target, id)",
        ],
    )


@MIGRATIONS(name="m002_bindings")
def _m002_bindings(db: Database) -> None:
    _run(
        db,
        [
            """CREATE TABLE bindings (
                id INTEGER PRIMARY KEY,
                extension TEXT NOT NULL
                    REFERENCES users(extension) ON DELETE CASCADE,
                contact TEXT NOT NULL,
                expires_at REAL NOT NULL,
                call_id TEXT NOT NULL,
                cseq INTEGER NOT NULL,
                transport TEXT NOT NULL,
                source_host TEXT NOT NULL,
                source_port INTEGER NOT NULL,
                user_agent TEXT NOT NULL,
                instance_id TEXT,
                reg_id INTEGER,
                path TEXT NOT NULL DEFAULT '[]',
                q REAL,
                updated_at REAL NOT NULL,
                UNIQUE (extension, contact)
            )""",
            "CREATE INDEX bindings_expires_at ON bindings(expires_at)",
        ],
    )


@MIGRATIONS(name="m003_bans")
def _m003_bans(db: Database) -> None:
    # username '' stands for "every user" (NULLs would not collide in the unique index).
    _run(
        db,
        [
            """CREATE TABLE bans (
                address TEXT NOT NULL,
                username TEXT NOT NULL DEFAULT '',
                until REAL NOT NULL,
                reason TEXT NOT NULL,
                created_at REAL NOT NULL,
                PRIMARY KEY (address, username)
            )""",
            "CREATE INDEX bans_until ON bans(until)",
        ],
    )


@MIGRATIONS(name="m004_call_records")
def _m004_call_records(db: Database) -> None:
    # One row per call. Written when the call is answered (before the 200 OK is relayed) and
    # completed when it ends; rows still open at start-up were cut by a crash ('interrupted').
    _run(
        db,
        [
            """CREATE TABLE call_records (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                call_id TEXT NOT NULL UNIQUE,
                caller TEXT NOT NULL,
                caller_name TEXT NOT NULL DEFAULT '',
                callee TEXT NOT NULL DEFAULT '',
                dialled TEXT NOT NULL,
                direction TEXT NOT NULL DEFAULT 'internal',
                caller_user TEXT,
                callee_user TEXT,
                caller_site TEXT,
                callee_site TEXT,
                started_at REAL NOT NULL,
                answered_at REAL,
                ended_at REAL,
                duration REAL,
                disposition TEXT NOT NULL DEFAULT 'open',
                hangup_side TEXT,
                hangup_cause TEXT,
                caller_codec TEXT,
                callee_codec TEXT
            )""",
            "CREATE INDEX call_records_started ON call_records(started_at)",
            "CREATE INDEX call_records_open ON call_records(disposition) WHERE disposition = 'open'",
        ],
    )


@MIGRATIONS(name="m005_user_call_options")
def _m005_user_call_options(db: Database) -> None:
    # call_waiting: 0 makes a second call to a busy extension get 486. static_contact: a SIP
    # URI the extension is always reached at besides its registrations (gateways, door phones).
    _run(
        db,
        [
            "ALTER TABLE users ADD COLUMN call_waiting INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE users ADD COLUMN static_contact TEXT",
        ],
    )


@MIGRATIONS(name="m006_web")
def _m006_web(db: Database) -> None:
    # The admin web UI and REST API: sites, account roles, API tokens, known devices.
    _run(
        db,
        [
            """CREATE TABLE sites (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                timezone TEXT NOT NULL,
                country_code TEXT NOT NULL DEFAULT '',
                area_code TEXT NOT NULL DEFAULT '',
                number_block_start TEXT NOT NULL DEFAULT '',
                number_block_end TEXT NOT NULL DEFAULT '',
                created_at REAL NOT NULL
            )""",
            "ALTER TABLE users ADD COLUMN site_id INTEGER REFERENCES sites(id)",
            "CREATE INDEX users_site ON users(site_id)",
            "ALTER TABLE admins ADD COLUMN role TEXT NOT NULL DEFAULT 'admin'",
            "ALTER TABLE admins ADD COLUMN site_id INTEGER REFERENCES sites(id)",
            "ALTER TABLE admins ADD COLUMN extension TEXT",
            "ALTER TABLE admins ADD COLUMN expires_at REAL",
            "ALTER TABLE admins ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE admins ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE admins ADD COLUMN locked_until REAL",
            # site_id without a foreign key: a revoked token must not keep its site alive.
            """CREATE TABLE api_tokens (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL,
                site_id INTEGER,
                created_by TEXT NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL,
                revoked_at REAL,
                last_used_at REAL
            )""",
            # device_key: the MAC when known, else the RFC 5626 instance id, else
            # extension + User-Agent; one row per physical (or soft) phone.
            """CREATE TABLE devices (
                id INTEGER PRIMARY KEY,
                device_key TEXT NOT NULL UNIQUE,
                mac TEXT UNIQUE,
                model TEXT NOT NULL DEFAULT '',
                vendor TEXT NOT NULL DEFAULT '',
                user_agent TEXT NOT NULL DEFAULT '',
                extension TEXT,
                address TEXT NOT NULL DEFAULT '',
                first_seen REAL NOT NULL,
                last_seen REAL NOT NULL
            )""",
            "CREATE INDEX devices_extension ON devices(extension)",
            "CREATE INDEX call_records_caller_user ON call_records(caller_user)",
            "CREATE INDEX call_records_callee_user ON call_records(callee_user)",
        ],
    )


@MIGRATIONS(name="m007_call_records_not_unique")
def _m007_call_records_not_unique(db: Database) -> None:
    # One SIP Call-ID can carry several calls: a phone retries an INVITE refused with 422 or
    # 488 with the same Call-ID, and each attempt has its record. Rows are closed by their id.
    columns = (
        "id, call_id, caller, caller_name, callee, dialled, direction, caller_user, "
        "callee_user, caller_site, callee_site, started_at, answered_at, ended_at, duration, "
        "disposition, hangup_side, hangup_cause, caller_codec, callee_codec"
    )
    _run(
        db,
        [
            """CREATE TABLE call_records_new (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                call_id TEXT NOT NULL,
                caller TEXT NOT NULL,
                caller_name TEXT NOT NULL DEFAULT '',
                callee TEXT NOT NULL DEFAULT '',
                dialled TEXT NOT NULL,
                direction TEXT NOT NULL DEFAULT 'internal',
                caller_user TEXT,
                callee_user TEXT,
                caller_site TEXT,
                callee_site TEXT,
                started_at REAL NOT NULL,
                answered_at REAL,
                ended_at REAL,
                duration REAL,
                disposition TEXT NOT NULL DEFAULT 'open',
                hangup_side TEXT,
                hangup_cause TEXT,
                caller_codec TEXT,
                callee_codec TEXT
            )""",
            f"INSERT INTO call_records_new ({columns}) SELECT {columns} FROM call_records",
            "DROP TABLE call_records",
            "ALTER TABLE call_records_new RENAME TO call_records",
            "CREATE INDEX call_records_started ON call_records(started_at)",
            "CREATE INDEX call_records_open ON call_records(disposition) WHERE disposition = 'open'",
            "CREATE INDEX call_records_caller_user ON call_records(caller_user)",
            "CREATE INDEX call_records_callee_user ON call_records(callee_user)",
            "CREATE INDEX call_records_call_id ON call_records(call_id)",
        ],
    )


@MIGRATIONS(name="m008_api_token_owner")
def _m008_api_token_owner(db: Database) -> None:
    # owner: the web account whose authority an API token carries; the token works only while
    # that account exists, is enabled and has not expired. A token made in the UI belongs to
    # its maker ('web:NAME'); one made through the API ('api:TOKEN-NAME') to the owner of the
    # token that made it: the latest one of that name made before it. Untraceable ones get
    # no owner and stop working.
    _run(
        db,
        [
            "ALTER TABLE api_tokens ADD COLUMN owner TEXT",
            "UPDATE api_tokens SET owner = substr(created_by, 5) WHERE created_by LIKE 'web:%'",
        ],
    )
    maker = (
        "SELECT p.owner FROM api_tokens p WHERE 'api:' || p.name = api_tokens.created_by "
        "AND p.id < api_tokens.id AND p.owner IS NOT NULL ORDER BY p.id DESC LIMIT 1"
    )
    while db.execute(
        f"UPDATE api_tokens SET owner = ({maker}) WHERE owner IS NULL "
        f"AND created_by LIKE 'api:%' AND ({maker}) IS NOT NULL"
    ).rowcount:
        pass
    (orphans,) = db.execute("SELECT COUNT(*) FROM api_tokens WHERE owner IS NULL").fetchone()
    if orphans:
        log.warning("%d API token(s) belong to no web account and no longer work", orphans)


@MIGRATIONS(name="m009_pickup_groups")
def _m009_pickup_groups(db: Database) -> None:
    # pickup_group: users of one group answer each other's ringing calls with the group pickup
    # feature code (config/feature_codes.toml); NULL: in no group.
    _run(
        db,
        [
            "ALTER TABLE users ADD COLUMN pickup_group TEXT",
            "CREATE INDEX users_pickup_group ON users(pickup_group) WHERE pickup_group IS NOT NULL",
        ],
    )


@MIGRATIONS(name="m010_call_history")
def _m010_call_history(db: Database) -> None:
    # The steps of a call, written with its record (pbx.store.cdr.HistoryEntry): talk segments
    # (until = when they ended) and transfers, parks, unparks and pickups; parties as a JSON
    # array of numbers. Deleted with the record. NB: with foreign keys on, a migration that
    # rebuilds call_records (as m007 did) must move these rows too: DROP TABLE cascades.
    _run(
        db,
        [
            """CREATE TABLE call_history (
                id INTEGER PRIMARY KEY,
                record_id INTEGER NOT NULL REFERENCES call_records(id) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                kind TEXT NOT NULL,
                at REAL NOT NULL,
                until REAL,
                parties TEXT NOT NULL DEFAULT '[]',
                detail TEXT NOT NULL DEFAULT ''
            )""",
            "CREATE UNIQUE INDEX call_history_record ON call_history(record_id, position)",
        ],
    )


@MIGRATIONS(name="m011_site_music")
def _m011_site_music(db: Database) -> None:
    # A site's own hold music: the file is DATA/moh/site-<id>/music.wav (converted to 8 kHz
    # mono 16-bit); this row says what was uploaded, how long it plays, when and by whom.
    _run(
        db,
        [
            """CREATE TABLE site_music (
                site_id INTEGER PRIMARY KEY REFERENCES sites(id) ON DELETE CASCADE,
                original_name TEXT NOT NULL,
                duration_s REAL NOT NULL,
                uploaded_at REAL NOT NULL,
                uploaded_by TEXT NOT NULL
            )""",
        ],
    )


@MIGRATIONS(name="m012_trunks")
def _m012_trunks(db: Database) -> None:
    # SIP trunks (pbx.store.trunks): password_enc is Fernet-encrypted like SIP passwords;
    # allow_from a JSON array of networks whose INVITEs need no challenge (IP-authenticated);
    # proxy '' means "the domain". updated_at lets a running server see changes.
    _run(
        db,
        [
            """CREATE TABLE trunks (
                name TEXT PRIMARY KEY,
                preset TEXT NOT NULL,
                domain TEXT NOT NULL,
                proxy TEXT NOT NULL DEFAULT '',
                transport TEXT NOT NULL DEFAULT 'udp',
                username TEXT NOT NULL DEFAULT '',
                password_enc TEXT NOT NULL DEFAULT '',
                register INTEGER NOT NULL DEFAULT 1,
                expires INTEGER NOT NULL DEFAULT 600,
                allow_from TEXT NOT NULL DEFAULT '[]',
                enabled INTEGER NOT NULL DEFAULT 1,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )""",
            # public numbers (E.164 with +) and where calls to them go (an extension for now)
            """CREATE TABLE dids (
                number TEXT PRIMARY KEY,
                target TEXT NOT NULL,
                created_at REAL NOT NULL
            )""",
            # outbound routes: a dial pattern (pbx.dialpatterns), the digit users dial first to
            # get out, a priority (lower first) and the trunks to try in order (JSON array)
            """CREATE TABLE routes (
                name TEXT PRIMARY KEY,
                pattern TEXT NOT NULL,
                exit_digit TEXT NOT NULL DEFAULT '',
                priority INTEGER NOT NULL DEFAULT 100,
                trunks TEXT NOT NULL,
                created_at REAL NOT NULL
            )""",
        ],
    )


def migrate(db: Database) -> list[str]:
    """Apply every pending migration; return the names applied (empty when up to date)."""
    pending = [m.name for m in MIGRATIONS.pending(db)]
    if pending:
        MIGRATIONS.apply(db)
        log.info("applied database migrations: %s", ", ".join(pending))
    return pending
