"""Defects found by trying imported folders the way an operator would (folders written here,
in the styles teams keep: golang-migrate pairs, Flyway, sqitch), each with a small folder that
reproduces it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from bot.__main__ import main
from commands import Core
from state.machine import Status
from tests.support import folders
from tests.support.flow import COORDINATOR, TPM, Console

NO_006 = dict(register_mongodb_url=None, register_redis_url=None, encryption_key=None, deployment_url=None)


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    assert main(["import", str(folder)]) == 0
    return folder / "runbook.toml"


def _console(settings, runbook: Path, url: str) -> Console:
    return Console(Core.from_settings(settings.with_(database_url=url, runbook_path=runbook, **NO_006)))


def _run(console: Console) -> None:
    for user, text in ((COORDINATOR, "preflight"), (TPM, "approve"), (COORDINATOR, "run")):
        code, out = console(user, text)
        assert code == 0, out


def test_an_accepted_rollback_difference_does_not_fail_every_older_rollback(settings, scratch_db, tmp_path):
    """golang-migrate folder whose newest down file is not an exact inverse (the column comes back
    nullable, without its default). Once the TPM accepts that difference, `rollback all` goes on:
    the older rollbacks are judged by what they themselves leave, as the rehearsal judges them
    (was: every older phase failed its proof on the accepted lines)."""
    runbook = _write(
        tmp_path / "gm",
        {
            "000001_create_users.up.sql": "CREATE TABLE users (id int PRIMARY KEY, verified boolean NOT NULL DEFAULT false);\n",
            "000001_create_users.down.sql": "DROP TABLE users;\n",
            "000002_create_teams.up.sql": "CREATE TABLE teams (id int PRIMARY KEY);\n",
            "000002_create_teams.down.sql": "DROP TABLE teams;\n",
            "000003_drop_verified.up.sql": "ALTER TABLE users DROP COLUMN verified;\n",
            "000003_drop_verified.down.sql": "ALTER TABLE users ADD COLUMN verified boolean;\n",
        },
    )
    url = scratch_db()
    empty = folders.schema(url)
    console = _console(settings, runbook, url)
    _run(console)

    code, out = console(COORDINATOR, "rollback all")
    assert code == 1 and "Rollback all stopped at phase 3" in out, out
    code, out = console(TPM, "rollback accept")
    assert code == 0, out
    code, out = console(COORDINATOR, "rollback all")

    assert code == 0, out
    assert "Rollback of phase 2 complete" in out and "Rollback of phase 1 complete" in out
    assert "accepted" in out.split("Rollback of phase 2 complete")[1].split("Rollback of phase 1")[0]
    assert console.core.store.current().status is Status.ROLLED_BACK
    assert folders.schema(url) == empty


def test_a_rollback_that_deletes_rows_outside_public_is_not_reported_data_loss_none(
    settings, scratch_db, tmp_path
):
    """Teams keep their tables in their own schema (sqitch's `flipr`, `app`, …). The rollback
    proof's row counts cover every schema of the database, not only 006's `platform` and
    `public` (was: "Data loss: none — row counts … unchanged (checked)" after a down file
    deleted every row of app.items)."""
    runbook = _write(
        tmp_path / "gm",
        {
            "000001_app_items.up.sql": "CREATE SCHEMA app;\nCREATE TABLE app.items (id int PRIMARY KEY);\n"
            "INSERT INTO app.items VALUES (1), (2), (3);\n",
            "000001_app_items.down.sql": "DROP SCHEMA app CASCADE;\n",
            "000002_app_tags.up.sql": "CREATE TABLE app.tags (id int PRIMARY KEY);\n",
            "000002_app_tags.down.sql": "DROP TABLE app.tags;\nDELETE FROM app.items;\n",
        },
    )
    console = _console(settings, runbook, scratch_db())
    _run(console)

    code, out = console(COORDINATOR, "rollback phase 2")

    assert code == 1, out
    assert "Data loss: row counts changed in app.items" in out
    assert "Data loss: none" not in out


def test_a_folder_that_creates_no_table_ends_successful(settings, scratch_db, tmp_path):
    """A plain folder of functions only (the bot's own ledger, in its own schema): the final
    "Database healthy" gate reads every table there is — none is not a failure (was: FAILED
    "observed 0 tables readable" after every migration succeeded)."""
    runbook = _write(
        tmp_path / "plain",
        {
            "001_slugify.sql": "CREATE FUNCTION slugify(t text) RETURNS text LANGUAGE sql IMMUTABLE "
            "AS $$ SELECT lower(regexp_replace(t, '[^a-zA-Z0-9]+', '-', 'g')) $$;\n",
        },
    )
    console = _console(settings, runbook, scratch_db())
    _run(console)

    assert "SUCCESSFUL" in console.everything()
    assert "Database healthy: 0 tables readable ✅" in console.everything()


def _sqitch_project(folder: Path, plan_lines: list[str]) -> None:
    for sub in ("deploy", "revert", "verify"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "sqitch.plan").write_text(
        "%syntax-version=1.0.0\n%project=shop\n\n" + "\n".join(plan_lines) + "\n"
    )
    for name in ("items", "items_v2", "orders"):
        (folder / "deploy" / f"{name}.sql").write_text(f"CREATE TABLE {name} (id int);\n")
        (folder / "revert" / f"{name}.sql").write_text(f"DROP TABLE {name};\n")


def test_import_refuses_a_sqitch_conflict_sqitch_itself_refuses(tmp_path, capsys):
    """`[!change]` is a conflict: sqitch refuses to deploy a change conflicting with one deployed
    before it, or with a change the plan does not name. The bot would deploy the whole plan
    in order and disagree with the registry's tool (was: imported, and `run` deployed both)."""
    earlier = tmp_path / "earlier"
    _sqitch_project(
        earlier,
        [
            "items 2026-02-01T10:00:00Z Ann Ops <ann@example.org> # items",
            "items_v2 [!items] 2026-02-01T10:05:00Z Ann Ops <ann@example.org> # replaces items",
        ],
    )
    assert main(["import", str(earlier)]) == 2
    assert "items_v2 conflicts with items, which is deployed before it" in capsys.readouterr().err

    unknown = tmp_path / "unknown"
    _sqitch_project(unknown, ["items [!legacy_items] 2026-02-01T10:00:00Z Ann Ops <ann@example.org> # items"])
    assert main(["import", str(unknown)]) == 2
    assert "items conflicts with legacy_items, which the plan does not name" in capsys.readouterr().err

    later = tmp_path / "later"  # a conflict with a change further down is what sqitch deploys
    _sqitch_project(
        later,
        [
            "items [!orders] 2026-02-01T10:00:00Z Ann Ops <ann@example.org> # items",
            "orders 2026-02-01T10:05:00Z Ann Ops <ann@example.org> # orders",
        ],
    )
    assert main(["import", str(later)]) == 0


def test_lock_safety_judges_the_table_a_file_reaches_through_its_own_search_path(
    settings, scratch_db, tmp_path
):
    """`SET search_path TO app; CREATE INDEX … ON items` locks app.items, which exists on the
    target and is above the runbook's threshold: NO-GO unless waived (was: "items: not on the
    target (created by this run)", GO — the parse named an unqualified `items`, looked up in
    the default search_path)."""
    url = scratch_db()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO app.items SELECT g, 'n' || g FROM generate_series(1, 50) g")
        conn.execute("ANALYZE app.items")
    runbook = _write(
        tmp_path / "gm",
        {
            "000001_items_name.up.sql": "SET search_path TO app;\nCREATE INDEX items_name ON items (name);\n",
            "000001_items_name.down.sql": "SET search_path TO app;\nDROP INDEX items_name;\n",
        },
    )
    with runbook.open("a") as out:
        out.write("\n[lock_safety]\nblock_rows = 10\n")
    console = _console(settings, runbook, url)

    code, out = console(COORDINATOR, "preflight")

    assert code == 1, out
    assert "SHARE on app.items; app.items: ~50 rows" in out and "BLOCKS" in out


@pytest.mark.parametrize("layout", ["flyway", "golang"])
def test_a_non_atomic_file_that_fails_is_not_said_to_have_rolled_back(settings, scratch_db, tmp_path, layout):
    """A file with CREATE INDEX CONCURRENTLY runs non-atomically; when a later statement of it
    fails (only on the live database here), the index stays. The failure's ledger advice says
    so (was: "its transaction rolled back … run it again", which then fails on the index)."""
    url = scratch_db()
    live = url.rsplit("/", 1)[-1]
    boom = f"DO $$ BEGIN IF current_database() = '{live}' THEN RAISE EXCEPTION 'boom'; END IF; END $$;\n"
    names = {
        "flyway": ("V1__items.sql", "U1__items.sql", "V2__items_name.sql", "U2__items_name.sql"),
        "golang": (
            "000001_items.up.sql",
            "000001_items.down.sql",
            "000002_items_name.up.sql",
            "000002_items_name.down.sql",
        ),
    }[layout]
    runbook = _write(
        tmp_path / layout,
        dict(
            zip(
                names,
                [
                    "CREATE TABLE items (id int PRIMARY KEY, name text);\n",
                    "DROP TABLE items;\n",
                    "CREATE INDEX CONCURRENTLY items_name ON items (name);\n" + boom,
                    "DROP INDEX CONCURRENTLY items_name;\n",
                ],
            )
        ),
    )
    console = _console(settings, runbook, url)
    for user, text in ((COORDINATOR, "preflight"), (TPM, "approve")):
        assert console(user, text)[0] == 0

    code, out = console(COORDINATOR, "run")

    assert code == 1, out
    ledger = out.split("Ledger — ", 1)[1].split("\n", 1)[0]
    assert "ran non-atomically: the statements before the failure stayed committed" in ledger
    assert "rolled back" not in ledger


def test_rollback_all_after_adopting_half_way_undoes_only_what_the_run_applied(
    settings, scratch_db, tmp_path
):
    """golang-migrate had applied 1 before the bot was adopted; the run applies 2 and 3. `rollback
    all` undoes 3 and 2 and leaves 1, which is older than the run's backup (was: it went on to
    run 1's down file, compared the result with the pre-migration schema — which holds 1 —
    and stopped FAILED "the rehearsal did NOT show this difference")."""
    runbook = _write(
        tmp_path / "gm",
        {
            "000001_users.up.sql": "CREATE TABLE users (id int PRIMARY KEY);\n",
            "000001_users.down.sql": "DROP TABLE users;\n",
            "000002_teams.up.sql": "CREATE TABLE teams (id int PRIMARY KEY);\n",
            "000002_teams.down.sql": "DROP TABLE teams;\n",
            "000003_users_team.up.sql": "ALTER TABLE users ADD COLUMN team_id int REFERENCES teams (id);\n",
            "000003_users_team.down.sql": "ALTER TABLE users DROP COLUMN team_id;\n",
        },
    )
    url = scratch_db()
    with psycopg.connect(url, autocommit=True) as conn:  # what golang-migrate did before the bot
        conn.execute((runbook.parent / "000001_users.up.sql").read_text())
        conn.execute(
            "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)"
        )
        conn.execute("INSERT INTO schema_migrations VALUES (1, false)")
    adopted = folders.schema(url)
    console = _console(settings, runbook, url)
    _run(console)
    assert "shows 1 applied, skipped" in console.everything()

    code, out = console(COORDINATOR, "rollback all")

    assert code == 0, out
    assert "Rollback of phase 3 complete" in out and "Rollback of phase 2 complete" in out
    assert "Rollback of phase 1 " not in out and "Phase 1 applied before this run" in out
    assert folders.schema(url) == adopted
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version, dirty FROM schema_migrations").fetchall() == [(1, False)]


def test_rollback_all_refused_for_missing_undo_files_says_what_can_be_done(settings, scratch_db, tmp_path):
    """Flyway folders keep undo files for some versions only. `rollback all` refuses, changing
    nothing, and names the way that remains for the newer phases (was: "phase 2, 1 has no
    rollback file …: cannot undo it")."""
    runbook = _write(
        tmp_path / "fw",
        {
            "V1__people.sql": "CREATE TABLE people (id int PRIMARY KEY);\n",
            "V1.1__seed.sql": "INSERT INTO people VALUES (1), (2);\n",
            "V2__email.sql": "ALTER TABLE people ADD COLUMN email text;\n",
            "U2__email.sql": "ALTER TABLE people DROP COLUMN email;\n",
        },
    )
    url = scratch_db()
    console = _console(settings, runbook, url)
    _run(console)
    applied = folders.schema(url)

    code, out = console(COORDINATOR, "rollback all")

    assert code == 2, out
    assert (
        "phases 2, 1 have no rollback file" in out
        and "cannot undo them" in out
        and "roll back the newer ones one by one (`rollback phase 3` first)" in out
    )
    assert folders.schema(url) == applied
