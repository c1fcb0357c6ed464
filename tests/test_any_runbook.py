"""Runbooks nobody here wrote (issue 13): what the runbook names runs, whatever its shape."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from commands import Core
from engine import ledger
from runbook.model import load_runbook
from tests.support import pg
from tests.support.flow import COORDINATOR, Console
from tests.support.migration_folders import Folder, Migration, generated


@pytest.fixture
def bare(settings, scratch_db):
    """An empty database and none of 006's settings (no deployment, no inputs)."""
    return settings.with_(
        database_url=scratch_db(),
        deployment_url=None,
        register_mongodb_url=None,
        register_redis_url=None,
        encryption_key=None,
    )


def with_ledger_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")


TWO = [
    Migration("001_items", "CREATE TABLE items (id int PRIMARY KEY);\n", "DROP TABLE items;\n"),
    Migration(
        "002_label", "ALTER TABLE items ADD COLUMN label text;\n", "ALTER TABLE items DROP COLUMN label;\n"
    ),
]


def test_a_runbook_without_a_verification_phase_runs_to_success_and_records_its_version(bare, tmp_path):
    """Fails on the old code: StopIteration in run_all after every phase succeeded, and the
    version never reached the ledger."""
    with_ledger_table(bare.database_url)
    runbook = Folder(tmp_path / "two", TWO).write('[ledger]\nkind = "table"\ntable = "schema_migrations"')
    core = Core.from_settings(bare.with_(runbook_path=runbook))
    console = Console(core)
    console.approved()
    code, out = console(COORDINATOR, "run")
    assert code == 0, out
    assert "SUCCESSFUL" in out
    assert str(core.store.current().status) == "succeeded"
    assert (
        pg.scalar(bare.database_url, "SELECT count(*) FROM schema_migrations WHERE version = '20260102'") == 1
    )

    code, out = console(COORDINATOR, "verify")
    assert code == 0, out
    assert "no verification phase" in out and "SUCCESSFUL" in out


def test_files_in_subfolders_run_by_their_path_relative_to_the_runbook(bare, tmp_path):
    """deploy/x.sql and revert/x.sql share a base name. Fails on the old code: the file was
    parsed and checksummed, then refused at execution (membership checked by base name)."""
    runbook = Folder(tmp_path / "sub", TWO, subfolders=True).write()
    core = Core.from_settings(bare.with_(runbook_path=runbook))
    console = Console(core)
    console.approved()
    code, out = console(COORDINATOR, "run")
    assert code == 0, out
    assert "SUCCESSFUL" in out
    files = {(r["step"], r["file"]) for r in ledger.applied_files(bare.database_url, "generated")}
    assert files == {("1.1", "deploy/001_items.sql"), ("2.1", "deploy/002_label.sql")}
    code, out = console(COORDINATOR, "rollback phase 2")
    assert code == 0, out
    assert (
        pg.scalar(
            bare.database_url,
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'items' AND column_name = 'label'",
        )
        == 0
    )


@pytest.mark.parametrize("path", ["../elsewhere.sql", "/etc/passwd", "deploy/../../x.sql", "link/x.sql"])
def test_a_file_outside_the_runbook_folder_is_refused_at_load(tmp_path, path):
    from runbook.model import RunbookError

    folder = tmp_path / "rb"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    (folder / "link").symlink_to(tmp_path / "outside")
    (folder / "runbook.toml").write_text(
        f'[runbook]\nid = "x"\nversion = "1"\n\n[[phases]]\nnumber = 1\nname = "a"\nowner = "coordinator"\n\n'
        f'[[phases.steps]]\nid = "1.1"\nfile = "{path}"\n'
    )
    with pytest.raises(RunbookError, match="outside the runbook's folder"):
        load_runbook(folder / "runbook.toml")


SUITE = """\
-- verify: items is usable
SELECT CASE WHEN to_regclass('public.breaks_the_suite') IS NULL THEN 'ok: items usable'
            ELSE 'FAIL: breaks_the_suite exists' END AS result;
"""
WITH_SUITE = (
    '[[phases.suites]]\nname = "items usable"\nfile = "verify/001_items.sql"\nfail_pattern = "^\\\\s*FAIL:"'
)


def suite_runbook(tmp_path: Path) -> Path:
    folder = Folder(tmp_path / "suite", TWO)
    runbook = folder.write(phase_extra={1: WITH_SUITE})
    (folder.root / "verify").mkdir()
    (folder.root / "verify" / "001_items.sql").write_text(SUITE)
    return runbook


def test_a_migration_phase_runs_its_suite_right_after_it_and_fails_when_the_suite_does(bare, tmp_path):
    """Fails on the old code: the suite was checksummed and bound to the approval, then never
    run; phase 1 and the whole run were reported ✅."""
    core = Core.from_settings(bare.with_(runbook_path=suite_runbook(tmp_path)))
    console = Console(core)
    console.approved()
    with psycopg.connect(bare.database_url, autocommit=True) as conn:  # production differs from the rehearsal
        conn.execute("CREATE TABLE breaks_the_suite (id int)")
    code, out = console(COORDINATOR, "run")
    assert code == 1, out
    assert "Suite items usable" in out and "FAIL: breaks_the_suite exists" in out
    assert "Phase 1 complete" not in out and "Phase 2 started" not in out
    assert str(core.store.current().phases[1].status) == "failed"


def test_the_rehearsal_runs_a_migration_phase_suite_too(bare, tmp_path):
    """Fails on the old code: the rehearsal skipped the suite and said GO."""
    with psycopg.connect(bare.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE breaks_the_suite (id int)")
    console = Console(Core.from_settings(bare.with_(runbook_path=suite_runbook(tmp_path))))
    code, out = console(COORDINATOR, "preflight")
    assert code == 1, out
    assert "verify/001_items.sql" in out and "FAIL: breaks_the_suite exists" in out


# ------------------------------------------------------------------ generality ("Must show")


def empty_schema(scratch_db) -> str:
    return pg.schema_dump(scratch_db())


@pytest.mark.parametrize("count, subfolders", [(24, False), (12, True)])
def test_a_generated_folder_runs_like_psql_and_rolls_all_back(bare, tmp_path, scratch_db, count, subfolders):
    """Many small up/down migrations (DROP INDEX, renames, sequences, functions, views, a
    materialized view, triggers, empty files; downs that are not mirror images), a runbook with
    no inputs, no deployment, no ledger table and no verification phase: preflight → approve →
    run → SUCCESSFUL, the schema equal (pg_dump --schema-only) to `psql -X -1 -f` of the same
    files in order on a twin database; then `rollback all` returns the empty schema."""
    folder = Folder(tmp_path / "gen", generated(count), subfolders=subfolders)
    core = Core.from_settings(bare.with_(runbook_path=folder.write()))
    console = Console(core)
    console.approved()
    code, out = console(COORDINATOR, "run")
    assert code == 0, out
    assert "SUCCESSFUL" in out

    twin = scratch_db()
    folder.apply_with_psql(twin)
    assert pg.schema_dump(bare.database_url) == pg.schema_dump(twin)

    code, out = console(COORDINATOR, "rollback all")
    assert code == 0, out
    assert pg.schema_dump(bare.database_url) == empty_schema(scratch_db)
