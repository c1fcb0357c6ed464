"""engine.ledgers: each kind's rows as its own tool writes them, on a real database, through
the executor (the row commits with the migration, or not at all)."""

from __future__ import annotations

import binascii
from pathlib import Path

import psycopg

from engine import ledgers
from engine.executor import Executor
from preflight import database
from runbook.model import load_runbook


def _folder(
    tmp_path: Path, kind: str, files: dict[str, str], steps: list[tuple[str, str, str | None]]
) -> Path:
    """A runbook folder: `files` written as given; one phase per (file, migration, rollback)."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    phases = "".join(
        f'\n[[phases]]\nnumber = {i}\nname = "{file}"\nowner = "coordinator"\n'
        + (f'rollback = "{rollback}"\n' if rollback else "")
        + f'[[phases.steps]]\nid = "{i}.1"\nfile = "{file}"\nmigration = "{migration}"\n'
        for i, (file, migration, rollback) in enumerate(steps, 1)
    )
    path = tmp_path / "runbook.toml"
    path.write_text(f'[runbook]\nid = "t"\nversion = "t"\n[ledger]\nkind = "{kind}"\n{phases}')
    return path


def java_readline_crc32(data: bytes) -> int:
    """Reference for Flyway's documented checksum, written independently of the bot's: Java's
    BufferedReader.readLine() ends a line at \\n, \\r or \\r\\n and drops it; the BOM is
    filtered from the first line; CRC-32 (java.util.zip.CRC32) is updated with each line's
    UTF-8 bytes; the long is cast to a signed int."""
    text, lines, current, i = data.decode("utf-8"), [], "", 0
    while i < len(text):
        ch = text[i]
        if ch in "\r\n":
            lines.append(current)
            current = ""
            if ch == "\r" and text[i + 1 : i + 2] == "\n":
                i += 1
        else:
            current += ch
        i += 1
    if current:
        lines.append(current)
    if lines:
        lines[0] = lines[0].lstrip("\ufeff")
    value = binascii.crc32(b"".join(line.encode("utf-8") for line in lines)) & 0xFFFFFFFF
    return value - 2**32 if value > 2**31 - 1 else value


def _run(url: str, rb, number: int, actor: str = "U0RAFAEL"):
    step = rb.phase(number).steps[0]
    ledger = ledgers.for_runbook(rb)
    entry = ledger.entry(step, actor)
    with psycopg.connect(url, autocommit=True) as conn:
        ledger.before(conn, entry)
    return Executor(url).run_step(rb, step, inputs={}, team_ledger=lambda d: ledger.record(entry, d))


def _undo(url: str, rb, number: int, actor: str = "U0RAFAEL"):
    phase = rb.phase(number)
    ledger = ledgers.for_runbook(rb)
    entry = ledger.entry(phase.steps[0], actor)
    with psycopg.connect(url, autocommit=True) as conn:
        ledger.before_remove(conn, entry)
    return Executor(url).run_file(
        rb.file_path(phase.rollback), team_ledger=lambda d: ledger.remove(entry, phase.rollback, d)
    )


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_flyway_checksum_matches_the_documented_algorithm():
    from engine.ledgers.flyway import checksum

    for data in (
        b"CREATE TABLE t (id int);\n",
        b"\xef\xbb\xbfSELECT 1;\r\nSELECT 2;\r\n",
        b"a\rb\n\nc",
        "-- caf\u00e9\nSELECT '\u00e9';\n".encode(),
        b"",
    ):
        assert checksum(data) == java_readline_crc32(data)
    assert checksum(b"x\r\ny\n") == checksum(b"x\ny")  # line-ending independent, as Flyway says


def test_flyway_history_rows_column_by_column_and_undo(scratch_db, tmp_path):
    url = scratch_db()
    v1 = "CREATE TABLE account (id int PRIMARY KEY);\n"
    rb = load_runbook(
        _folder(
            tmp_path,
            "flyway",
            {
                "V1__Create_account.sql": v1,
                "V1_1__Add_name.sql": "ALTER TABLE account ADD COLUMN name text;\n",
                "U1_1__Add_name.sql": "ALTER TABLE account DROP COLUMN name;\n",
            },
            [("V1__Create_account.sql", "1", None), ("V1_1__Add_name.sql", "1.1", "U1_1__Add_name.sql")],
        )
    )
    assert _run(url, rb, 1).ok and _run(url, rb, 2).ok
    rows = _rows(
        url,
        "SELECT installed_rank, version, description, type, script, checksum, installed_by, "
        "installed_on IS NOT NULL, execution_time >= 0, success FROM flyway_schema_history ORDER BY 1",
    )
    assert rows == [
        (
            1,
            "1",
            "Create account",
            "SQL",
            "V1__Create_account.sql",
            java_readline_crc32(v1.encode()),
            "postgres",
            True,
            True,
            True,
        ),
        (
            2,
            "1.1",
            "Add name",
            "SQL",
            "V1_1__Add_name.sql",
            java_readline_crc32(b"ALTER TABLE account ADD COLUMN name text;\n"),
            "postgres",
            True,
            True,
            True,
        ),
    ]
    columns = _rows(
        url,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'flyway_schema_history' ORDER BY ordinal_position",
    )
    assert [c[0] for c in columns] == [
        "installed_rank",
        "version",
        "description",
        "type",
        "script",
        "checksum",
        "installed_by",
        "installed_on",
        "execution_time",
        "success",
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        assert ledgers.for_runbook(rb).applied(conn) == {"1", "1.1"}
    assert _undo(url, rb, 2).ok
    assert _rows(
        url,
        "SELECT installed_rank, version, type, script, success FROM flyway_schema_history "
        "WHERE installed_rank = 3",
    ) == [(3, "1.1", "UNDO_SQL", "U1_1__Add_name.sql", True)]
    with psycopg.connect(url, autocommit=True) as conn:
        assert ledgers.for_runbook(rb).applied(conn) == {"1"}


def test_flyway_failed_migration_leaves_no_row(scratch_db, tmp_path):
    url = scratch_db()
    rb = load_runbook(
        _folder(
            tmp_path,
            "flyway",
            {"V1__Broken.sql": "CREATE TABLE a (id int);\nSELECT 1/0;\n"},
            [("V1__Broken.sql", "1", None)],
        )
    )
    assert not _run(url, rb, 1).ok
    assert _rows(url, "SELECT to_regclass('flyway_schema_history')::text, to_regclass('a')::text") == [
        (None, None)
    ]


def test_golang_migrate_dirty_while_running_clean_after_and_dirty_after_failure(scratch_db, tmp_path):
    url = scratch_db()
    rb = load_runbook(
        _folder(
            tmp_path,
            "golang-migrate",
            {
                "0001_a.up.sql": "CREATE TABLE a (id int);\n",
                "0001_a.down.sql": "DROP TABLE a;\n",
                "0002_b.up.sql": "DO $$ BEGIN IF NOT EXISTS (SELECT FROM schema_migrations WHERE dirty AND version = 2) THEN "
                "RAISE 'not dirty while running'; END IF; END $$;\nCREATE TABLE b (id int);\n",
                "0002_b.down.sql": "DROP TABLE b;\n",
                "0003_c.up.sql": "CREATE TABLE c (id int);\nSELECT 1/0;\n",
            },
            [
                ("0001_a.up.sql", "0001", "0001_a.down.sql"),
                ("0002_b.up.sql", "0002", "0002_b.down.sql"),
                ("0003_c.up.sql", "0003", None),
            ],
        )
    )
    assert _run(url, rb, 1).ok
    assert _rows(url, "SELECT version, dirty FROM schema_migrations") == [(1, False)]
    assert _run(url, rb, 2).ok
    assert _rows(url, "SELECT version, dirty FROM schema_migrations") == [(2, False)]
    assert not _run(url, rb, 3).ok
    assert _rows(url, "SELECT version, dirty FROM schema_migrations") == [(3, True)]
    [line] = [l for l in database.database_lines(url, rb, 5.0) if l.key == "migrations"]
    assert not line.ok and "dirty at version 3" in line.observed and "migrate force 2" in line.observed
    with psycopg.connect(url, autocommit=True) as conn:  # what `migrate force 2` does
        conn.execute("UPDATE schema_migrations SET version = 2, dirty = false")
    assert _undo(url, rb, 2).ok
    assert _rows(url, "SELECT version, dirty FROM schema_migrations") == [(1, False)]
    assert _undo(url, rb, 1).ok
    assert _rows(url, "SELECT count(*) FROM schema_migrations") == [(0,)]
    assert _rows(url, "SELECT to_regclass('a')::text, to_regclass('b')::text") == [(None, None)]


def test_table_ledger_with_its_own_table_and_column(scratch_db, tmp_path):
    url = scratch_db()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE app_versions (tag text PRIMARY KEY, name text NOT NULL)")
    path = _folder(
        tmp_path,
        "table",
        {"a.sql": "CREATE TABLE a (id int);\n", "a_down.sql": "DROP TABLE a;\n"},
        [("a.sql", "2024.1", "a_down.sql")],
    )
    path.write_text(
        path.read_text().replace('kind = "table"', 'kind = "table"\ntable = "app_versions"\ncolumn = "tag"')
    )
    rb = load_runbook(path)
    assert _run(url, rb, 1).ok
    assert _rows(url, "SELECT tag, name FROM app_versions") == [("2024.1", "a.sql")]
    assert _undo(url, rb, 1).ok
    assert _rows(url, "SELECT count(*) FROM app_versions") == [(0,)]


def test_bot_ledger_needs_no_schema_migrations(scratch_db, tmp_path):
    """Item 13.6: a runbook that declares no ledger gets the bot's own; preflight does not ask
    for schema_migrations."""
    url = scratch_db()
    rb = load_runbook(
        _folder(tmp_path, "bot", {"a.sql": "CREATE TABLE a (id int);\n"}, [("a.sql", "a.sql", None)])
    )
    [line] = [l for l in database.database_lines(url, rb, 5.0) if l.key == "migrations"]
    assert line.ok, line.observed


def test_flyway_row_commits_with_a_file_run_through_psql(scratch_db, tmp_path):
    """A file with psql meta-commands runs as `psql -1 -f file -f ledger`: the history row is
    in the file's transaction there too."""
    url = scratch_db()
    text = "\\echo creating\nCREATE TABLE a (id int);\n"
    rb = load_runbook(
        _folder(
            tmp_path,
            "flyway",
            {"V1__Meta.sql": text, "V2__Meta_fails.sql": "\\echo x\nSELECT 1/0;\n"},
            [("V1__Meta.sql", "1", None), ("V2__Meta_fails.sql", "2", None)],
        )
    )
    assert _run(url, rb, 1).ok and not _run(url, rb, 2).ok
    assert _rows(
        url, "SELECT installed_rank, version, script, checksum, success FROM flyway_schema_history"
    ) == [(1, "1", "V1__Meta.sql", java_readline_crc32(text.encode()), True)]


def test_sqitch_runbook_naming_a_change_the_plan_lacks_is_a_no_go(scratch_db, tmp_path):
    url = scratch_db()
    (tmp_path / "sqitch.plan").write_text("%project=p\n\nusers 2026-01-01T00:00:00Z A <a@b.c> # users\n")
    path = _folder(
        tmp_path, "sqitch", {"users.sql": "CREATE TABLE u (id int);\n"}, [("users.sql", "roles", None)]
    )
    path.write_text(path.read_text().replace('kind = "sqitch"', 'kind = "sqitch"\nplan = "sqitch.plan"'))
    [line] = [l for l in database.database_lines(url, load_runbook(path), 5.0) if l.key == "migrations"]
    assert not line.ok and "names roles, which sqitch.plan does not plan" in line.observed
