"""Migration folders the suite writes itself, one per layout (nothing copied from public
projects), and the psql reference run they are compared with."""

from __future__ import annotations

import subprocess
from pathlib import Path

# Each migration: (up, down). Small, but the kinds that trip engines up: a sequence, an index,
# a rename, a function, a view, DROP INDEX.
MIGRATIONS = [
    (
        "Create accounts",
        "CREATE SEQUENCE account_seq;\nCREATE TABLE accounts (id bigint PRIMARY KEY DEFAULT nextval('account_seq'), email text NOT NULL);\n",
        "DROP TABLE accounts;\nDROP SEQUENCE account_seq;\n",
    ),
    (
        "Index email",
        "CREATE INDEX accounts_email_idx ON accounts (email);\n",
        "DROP INDEX accounts_email_idx;\n",
    ),
    (
        "Rename email",
        "ALTER TABLE accounts RENAME COLUMN email TO login;\n",
        "ALTER TABLE accounts RENAME COLUMN login TO email;\n",
    ),
    (
        "Login view",
        "CREATE FUNCTION normalized(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT lower(t) $$;\n"
        "CREATE VIEW logins AS SELECT id, normalized(login) AS login FROM accounts;\n",
        "DROP VIEW logins;\nDROP FUNCTION normalized(text);\n",
    ),
    (
        "Drop index",
        "DROP INDEX accounts_email_idx;\n",
        "CREATE INDEX accounts_email_idx ON accounts (login);\n",
    ),
]


def flyway(folder: Path) -> list[Path]:
    """V<n>__<desc>.sql with U undo files, a repeatable and a README the import ignores."""
    folder.mkdir(parents=True, exist_ok=True)
    ups = []
    for n, (desc, up, down) in enumerate(MIGRATIONS, 1):
        name = desc.replace(" ", "_")
        (folder / f"V{n}__{name}.sql").write_text(up)
        (folder / f"U{n}__{name}.sql").write_text(down)
        ups.append(folder / f"V{n}__{name}.sql")
    (folder / "R__refresh_stats.sql").write_text("SELECT 1;\n")
    (folder / "README.md").write_text("our migrations\n")
    return ups


def updown(folder: Path, style: str = "golang") -> list[Path]:
    """golang-migrate pairs (`0001_create_accounts.up.sql`) or `V0001.Name.up.sql`."""
    folder.mkdir(parents=True, exist_ok=True)
    ups = []
    for n, (desc, up, down) in enumerate(MIGRATIONS, 1):
        base = (
            f"{n:04d}_{desc.lower().replace(' ', '_')}"
            if style == "golang"
            else f"V{n:04d}.{desc.replace(' ', '')}"
        )
        (folder / f"{base}.up.sql").write_text(up)
        (folder / f"{base}.down.sql").write_text(down)
        ups.append(folder / f"{base}.up.sql")
    return ups


PLANNER = "Ada Planner <ada@example.org>"


def sqitch(folder: Path) -> list[Path]:
    """A sqitch project: plan with requires, a tag and a reworked change; deploy/revert/verify
    scripts in their subfolders, wrapped in BEGIN/COMMIT as `sqitch add` writes them."""
    for d in ("deploy", "revert", "verify"):
        (folder / d).mkdir(parents=True, exist_ok=True)
    changes = [
        ("accounts", "", MIGRATIONS[0][1], MIGRATIONS[0][2], "SELECT id, email FROM accounts WHERE false;\n"),
        (
            "email_idx",
            "[accounts]",
            MIGRATIONS[1][1],
            MIGRATIONS[1][2],
            "SELECT 1/count(*) FROM pg_class WHERE relname = 'accounts_email_idx';\n",
        ),
    ]
    lines = ["%syntax-version=1.0.0", "%project=ledgerdemo", "%uri=https://example.org/ledgerdemo/", ""]
    for i, (name, deps, up, down, verify) in enumerate(changes):
        lines.append(f"{name} {deps + ' ' if deps else ''}2026-01-0{i + 1}T10:00:00Z {PLANNER} # Add {name}")
        _scripts(folder, name, up, down, verify)
    lines.append(f"@v1.0 2026-01-03T10:00:00Z {PLANNER} # Tag v1.0.")
    # The index reworked after v1.0: the earlier scripts keep their text as email_idx@v1.0.sql.
    for d in ("deploy", "revert", "verify"):
        (folder / d / "email_idx@v1.0.sql").write_text((folder / d / "email_idx.sql").read_text())
    lines.append(f"email_idx [email_idx@v1.0] 2026-01-04T10:00:00Z {PLANNER} # Index email, lower-cased")
    _scripts(
        folder,
        "email_idx",
        "DROP INDEX accounts_email_idx;\nCREATE INDEX accounts_email_idx ON accounts (lower(email));\n",
        "DROP INDEX accounts_email_idx;\nCREATE INDEX accounts_email_idx ON accounts (email);\n",
        "SELECT 1/count(*) FROM pg_indexes WHERE indexname = 'accounts_email_idx' AND indexdef LIKE '%lower%';\n",
    )
    lines.append(f"logins [accounts] 2026-01-05T10:00:00Z {PLANNER} # Login view")
    _scripts(
        folder,
        "logins",
        MIGRATIONS[3][1].replace("login)", "email)"),
        MIGRATIONS[3][2],
        "SELECT id, login FROM logins WHERE false;\n",
    )
    (folder / "sqitch.plan").write_text("\n".join(lines) + "\n")
    (folder / "sqitch.conf").write_text("[core]\n\tengine = pg\n")
    return [
        folder / "deploy" / f for f in ("accounts.sql", "email_idx@v1.0.sql", "email_idx.sql", "logins.sql")
    ]


def _scripts(folder: Path, name: str, up: str, down: str, verify: str) -> None:
    wrap = "-- {what} {name}\n\nBEGIN;\n\n{body}\nCOMMIT;\n"
    (folder / "deploy" / f"{name}.sql").write_text(wrap.format(what="Deploy", name=name, body=up))
    (folder / "revert" / f"{name}.sql").write_text(wrap.format(what="Revert", name=name, body=down))
    (folder / "verify" / f"{name}.sql").write_text(f"-- Verify {name}\n\nBEGIN;\n\n{verify}\nROLLBACK;\n")


def plain(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ups = []
    for n, (desc, up, _down) in enumerate(MIGRATIONS, 1):
        path = folder / f"{n:03d}_{desc.lower().replace(' ', '_')}.sql"
        path.write_text(up)
        ups.append(path)
    return ups


def psql_each(url: str, files: list[Path]) -> None:
    """The reference: `psql -X -1 -v ON_ERROR_STOP=1 -f` of each file, in order."""
    for path in files:
        single = [] if "BEGIN;" in path.read_text() else ["-1"]
        subprocess.run(
            ["psql", "-X", *single, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(path), url],
            check=True,
            capture_output=True,
        )


def schema(url: str) -> str:
    """`pg_dump --schema-only` of what the migrations made: without the bot's schema and the
    ledgers' tables (the reference run by psql keeps no ledger)."""
    out = subprocess.run(
        [
            "pg_dump",
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--exclude-schema=migrate_bot",
            "--exclude-schema=sqitch",
            "--exclude-table=*.flyway_schema_history",
            "--exclude-table=*.schema_migrations",
            "-d",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(l for l in out.splitlines() if not l.startswith(("\\restrict", "\\unrestrict", "--")))
