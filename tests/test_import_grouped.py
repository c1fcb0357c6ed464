"""`python -m bot import DIR --group N`: several migrations per phase, each step keeping its own
revert (a phase's rollback runs them newest first, each with its ledger row's removal) and its
own verify script (run right after it). Folders written by the suite; real PostgreSQL, real sqitch."""

from __future__ import annotations

from pathlib import Path

import psycopg

from bot.__main__ import main
from runbook.model import load_runbook
from tests.support import folders
from tests.support.flow import COORDINATOR
from tests.test_import import _approved, _console, _import, _rows, _sqitch, _to_success

SIX = [
    (
        f"t{n}",
        f"CREATE TABLE t{n} (id int PRIMARY KEY{', ref int REFERENCES t1' if n > 1 else ''});\n",
        f"DROP TABLE t{n};\n",
    )
    for n in range(1, 7)
]


def _updown_six(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    ups = []
    for n, (name, up, down) in enumerate(SIX, 1):
        (folder / f"{n:04d}_create_{name}.up.sql").write_text(up)
        (folder / f"{n:04d}_create_{name}.down.sql").write_text(down)
        ups.append(folder / f"{n:04d}_create_{name}.up.sql")
    return ups


def _applied_files(url: str) -> list[str]:
    return [r[0] for r in _rows(url, "SELECT file FROM migrate_bot.applied_files ORDER BY started_at")]


def test_updown_folder_grouped_by_three_runs_and_rolls_back_step_by_step(
    settings, scratch_db, tmp_path, capsys
):
    folder = tmp_path / "updown"
    ups = _updown_six(folder)
    _import(folder, "--group", "3")
    printed = capsys.readouterr().out
    assert "phases: 2, 3 migrations each (--group 3)" in printed
    rb = load_runbook(folder / "runbook.toml")
    assert [[s.migration for s in p.steps] for p in rb.phases] == [["1", "2", "3"], ["4", "5", "6"]]
    assert [s.revert for s in rb.phases[1].steps] == [p.name.replace(".up.", ".down.") for p in ups[3:]]
    assert all(p.rollback is None for p in rb.phases)
    assert {p.name.replace(".up.", ".down.") for p in ups} <= set(
        rb.files()
    )  # the approval binds the reverts

    url, reference, empty = scratch_db(), scratch_db(), folders.schema(scratch_db())
    console = _console(settings, folder, url)
    _to_success(console)
    assert _applied_files(url) == [p.name for p in ups]  # one ledger row per migration
    assert _rows(url, "SELECT version, dirty FROM schema_migrations") == [(6, False)]

    code, out = console(COORDINATOR, "rollback phase 2")
    assert code == 0, out
    text = console.everything()
    assert text.index("Step revert 2.3 ") < text.index("Step revert 2.2 ") < text.index("Step revert 2.1 ")
    assert "Step revert 1." not in text
    folders.psql_each(reference, ups[:3])
    assert folders.schema(url) == folders.schema(reference)
    assert _rows(url, "SELECT version, dirty FROM schema_migrations") == [(3, False)]

    code, out = console(COORDINATOR, "rollback all")
    assert code == 0, out
    assert folders.schema(url) == empty
    assert _rows(url, "SELECT count(*) FROM schema_migrations") == [(0,)]


def test_flyway_folder_grouped_writes_an_undo_row_per_reverted_migration(settings, scratch_db, tmp_path):
    folder = tmp_path / "flyway"
    folders.flyway(folder)
    _import(folder, "--group", "2")
    assert [len(p.steps) for p in load_runbook(folder / "runbook.toml").phases] == [2, 2, 1]
    url, empty = scratch_db(), folders.schema(scratch_db())
    console = _console(settings, folder, url)
    _to_success(console)
    code, out = console(COORDINATOR, "rollback all")
    assert code == 0, out
    assert folders.schema(url) == empty
    assert _rows(
        url,
        "SELECT version, type FROM flyway_schema_history WHERE installed_rank > 5 ORDER BY installed_rank",
    ) == [(str(n), "UNDO_SQL") for n in range(5, 0, -1)]


def test_sqitch_project_grouped_by_two_agrees_with_sqitch(settings, scratch_db, tmp_path, capsys):
    folder = tmp_path / "sqitch"
    deploys = folders.sqitch(folder)
    _import(folder, "--group", "2")
    rb = load_runbook(folder / "runbook.toml")
    assert [[(s.migration, s.revert, s.verify) for s in p.steps] for p in rb.phases] == [
        [
            ("accounts", "revert/accounts.sql", "verify/accounts.sql"),
            ("email_idx@v1.0", "revert/email_idx@v1.0.sql", "verify/email_idx@v1.0.sql"),
        ],
        [
            ("email_idx", "revert/email_idx.sql", "verify/email_idx.sql"),
            ("logins", "revert/logins.sql", "verify/logins.sql"),
        ],
    ]
    assert all(not p.suites for p in rb.phases)  # the verify scripts belong to their steps
    url, reference, empty = scratch_db(), scratch_db(), folders.schema(scratch_db())
    console = _console(settings, folder, url)
    _to_success(console)
    text = console.everything()
    # each verify script right after its own step, before the next step runs
    assert (
        text.index("Step 1.1 ")
        < text.index("Suite verify accounts")
        < text.index("Step 1.2 ")
        < text.index("Suite verify email_idx@v1.0")
        < text.index("Step 2.1 ")
    )
    folders.psql_each(reference, deploys)
    assert folders.schema(url) == folders.schema(reference)
    status = _sqitch(folder, url, "status")
    assert status.returncode == 0 and "Nothing to deploy (up-to-date)" in status.stdout, (
        status.stdout + status.stderr
    )
    verify = _sqitch(folder, url, "verify")
    assert verify.returncode == 0 and "Verify successful" in verify.stdout, verify.stdout + verify.stderr

    code, out = console(COORDINATOR, "rollback all")
    assert code == 0, out
    assert folders.schema(url) == empty
    status = _sqitch(folder, url, "status")
    assert "No changes deployed" in status.stdout, status.stdout + status.stderr
    assert _rows(
        url, "SELECT event, change FROM sqitch.events WHERE event = 'revert' ORDER BY committed_at"
    ) == [("revert", c) for c in ("logins", "email_idx", "email_idx", "accounts")]
    assert _rows(url, "SELECT count(*) FROM sqitch.changes") == [(0,)]


def _sqitch_three(folder: Path, failing_verify: str) -> None:
    for d in ("deploy", "revert", "verify"):
        (folder / d).mkdir(parents=True)
    lines = ["%syntax-version=1.0.0", "%project=three", ""]
    for i, name in enumerate(("one", "two", "three"), 1):
        lines.append(f"{name} 2026-01-0{i}T10:00:00Z {folders.PLANNER} # {name}")
        (folder / "deploy" / f"{name}.sql").write_text(f"BEGIN;\nCREATE TABLE {name} (id int);\nCOMMIT;\n")
        (folder / "revert" / f"{name}.sql").write_text(f"BEGIN;\nDROP TABLE {name};\nCOMMIT;\n")
        (folder / "verify" / f"{name}.sql").write_text(
            f"BEGIN;\nSELECT id FROM {name} WHERE false;\n{failing_verify if name == 'two' else ''}ROLLBACK;\n"
        )
    (folder / "sqitch.plan").write_text("\n".join(lines) + "\n")
    (folder / "sqitch.conf").write_text("[core]\n\tengine = pg\n")


def test_a_failing_verify_script_stops_the_phase_before_the_next_step(settings, scratch_db, tmp_path):
    folder = tmp_path / "three"
    url, empty = scratch_db(), folders.schema(scratch_db())
    # fails on production only: the rehearsal's copy (another database name) passes it, as a
    # verify that meets production's data would
    _sqitch_three(
        folder,
        f"DO $$ BEGIN IF current_database() = '{url.rsplit('/', 1)[1]}' THEN "
        "RAISE 'two is not right'; END IF; END $$;\n",
    )
    assert main(["import", str(folder), "--group", "3"]) == 0
    assert len(load_runbook(folder / "runbook.toml").phases) == 1
    console = _console(settings, folder, url)
    _approved(console)
    code, out = console(COORDINATOR, "run")
    assert code == 1, out
    assert "two is not right" in console.everything()
    assert _rows(url, "SELECT to_regclass('three')::text, to_regclass('two')::text") == [(None, "two")]
    assert _rows(url, "SELECT change FROM sqitch.changes ORDER BY committed_at") == [("one",), ("two",)]

    code, out = console(COORDINATOR, "rollback phase 1")  # reverts two, then one; three never ran
    assert code == 0, out
    assert "Step revert 1.2 " in console.everything() and "Step revert 1.3" not in console.everything()
    assert folders.schema(url) == empty
    assert _rows(url, "SELECT count(*) FROM sqitch.changes") == [(0,)]


def test_a_phase_rollback_retried_after_a_revert_failed_does_not_revert_a_step_twice(
    settings, scratch_db, tmp_path
):
    folder = tmp_path / "updown"
    ups = _updown_six(folder)
    _import(folder, "--group", "3")
    url, reference = scratch_db(), scratch_db()
    console = _console(settings, folder, url)
    _to_success(console)
    with psycopg.connect(url) as conn:  # someone's view on t5: its revert (DROP TABLE t5) fails
        conn.execute("CREATE VIEW t5_ids AS SELECT id FROM t5")
    code, out = console(COORDINATOR, "rollback phase 2")
    assert code == 1, out
    assert _rows(url, "SELECT to_regclass('t6')::text, to_regclass('t5')::text") == [(None, "t5")]
    with psycopg.connect(url) as conn:
        conn.execute("DROP VIEW t5_ids")
    code, out = console(COORDINATOR, "rollback phase 2")  # t6 is gone already: its revert is not run again
    assert code == 0, out
    folders.psql_each(reference, ups[:3])
    assert folders.schema(url) == folders.schema(reference)
    assert _rows(url, "SELECT version, dirty FROM schema_migrations") == [(3, False)]


def test_a_verify_script_failing_in_the_rehearsal_is_a_no_go_naming_it(settings, scratch_db, tmp_path):
    folder = tmp_path / "three"
    _sqitch_three(folder, "SELECT 1/0;\n")
    _import(folder, "--group", "3")
    console = _console(settings, folder, scratch_db())
    code, out = console(COORDINATOR, "preflight")
    assert code == 1 and "verify/two.sql" in console.everything(), console.everything()


def test_a_grouped_phase_with_a_migration_without_down_says_it_cannot_be_rolled_back(
    settings, scratch_db, tmp_path, capsys
):
    folder = tmp_path / "updown"
    _updown_six(folder)
    (folder / "0005_create_t5.down.sql").unlink()
    for n in (
        4,
        5,
        6,
    ):  # independent of t1: phase 1's rollback can still be rehearsed under an unrolled phase 2
        (folder / f"{n:04d}_create_t{n}.up.sql").write_text(f"CREATE TABLE t{n} (id int PRIMARY KEY);\n")
    _import(folder, "--group", "3")
    assert (
        "phase 2 cannot be rolled back by the bot: a migration of it has no rollback file"
        in capsys.readouterr().out
    )
    console = _console(settings, folder, scratch_db())
    _to_success(console)
    code, out = console(COORDINATOR, "rollback phase 2")
    assert code == 2 and "step 2.2 names no `revert`" in out, out
