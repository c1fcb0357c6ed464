"""`python -m bot import` on folders the suite writes, in each layout, from the import through
preflight, approval, `run` and the rollbacks, compared with `psql -X -1 -f` of the same files
by `pg_dump --schema-only`; the ledger's rows checked column by column against the tool's format."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from bot.__main__ import main
from commands import Core
from runbook.model import load_runbook
from runbook.sqitchplan import load_plan, tag_info
from tests.support import folders
from tests.support.flow import COORDINATOR, TPM, Console
from tests.test_ledgers import java_readline_crc32

NO_006 = dict(register_mongodb_url=None, register_redis_url=None, encryption_key=None, deployment_url=None)


def _import(folder: Path, *args: str) -> None:
    assert main(["import", str(folder), *args]) == 0


def _console(settings, folder: Path, url: str) -> Console:
    return Console(
        Core.from_settings(settings.with_(database_url=url, runbook_path=folder / "runbook.toml", **NO_006))
    )


def _to_success(console: Console) -> None:
    for user, text in ((COORDINATOR, "preflight"), (TPM, "approve"), (COORDINATOR, "run")):
        code, out = console(user, text)
        assert code == 0, out
    assert "SUCCESSFUL" in out


def _roll_back_all(console: Console, phases: int) -> None:
    for n in range(phases, 0, -1):
        code, out = console(COORDINATOR, f"rollback phase {n}")
        assert code == 0, out


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_flyway_folder_from_import_to_rollback(settings, scratch_db, tmp_path, capsys):
    folder = tmp_path / "flyway"
    ups = folders.flyway(folder)
    _import(folder)
    printed = capsys.readouterr().out
    assert (
        str(folder / "runbook.toml") in printed
        and "5 migrations" in printed
        and "5 present, 0 missing" in printed
    )
    assert "ignored R__refresh_stats.sql: repeatable migration" in printed and "ignored README.md" in printed
    url, reference, empty = scratch_db(), scratch_db(), folders.schema(scratch_db())
    console = _console(settings, folder, url)
    _to_success(console)
    folders.psql_each(reference, ups)
    assert folders.schema(url) == folders.schema(reference)
    rows = _rows(
        url,
        "SELECT installed_rank, version, description, type, script, checksum, installed_by, success "
        "FROM flyway_schema_history ORDER BY installed_rank",
    )
    assert rows == [
        (n, str(n), desc, "SQL", p.name, java_readline_crc32(p.read_bytes()), "postgres", True)
        for n, (p, (desc, _u, _d)) in enumerate(zip(ups, folders.MIGRATIONS), 1)
    ]
    code, out = console(COORDINATOR, "rollback all")
    assert code == 0, out
    assert folders.schema(url) == empty
    undo = _rows(
        url,
        "SELECT installed_rank, version, type, script, success FROM flyway_schema_history "
        "WHERE installed_rank > 5 ORDER BY installed_rank",
    )
    assert undo == [
        (5 + i, str(n), "UNDO_SQL", f"U{n}__{folders.MIGRATIONS[n - 1][0].replace(' ', '_')}.sql", True)
        for i, n in enumerate(range(5, 0, -1), 1)
    ]


@pytest.mark.parametrize("style", ["golang", "dotted"])
def test_updown_folder_from_import_to_rollback(settings, scratch_db, tmp_path, style):
    folder = tmp_path / style
    ups = folders.updown(folder, style)
    _import(folder)
    url, reference, empty = scratch_db(), scratch_db(), folders.schema(scratch_db())
    console = _console(settings, folder, url)
    _to_success(console)
    folders.psql_each(reference, ups)
    assert folders.schema(url) == folders.schema(reference)
    assert _rows(url, "SELECT version, dirty FROM schema_migrations") == [(5, False)]
    columns = _rows(
        url,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'schema_migrations' ORDER BY ordinal_position",
    )
    assert columns == [("version", "bigint", "NO"), ("dirty", "boolean", "NO")]
    if style == "golang":
        _roll_back_all(console, 5)  # phase by phase, newest first
    else:
        code, out = console(COORDINATOR, "rollback all")
        assert code == 0, out
    assert folders.schema(url) == empty
    assert _rows(url, "SELECT count(*) FROM schema_migrations") == [(0,)]


def test_run_applies_only_what_the_flyway_history_does_not_show(settings, scratch_db, tmp_path):
    """Adoption mid-history: V1 and V2 were applied by Flyway itself; the bot applies 3…5."""
    folder = tmp_path / "flyway"
    ups = folders.flyway(folder)
    url = scratch_db()
    folders.psql_each(url, ups[:2])
    with psycopg.connect(url) as conn:  # the rows Flyway wrote for them
        conn.execute(
            "CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version varchar(50), "
            "description varchar(200) NOT NULL, type varchar(20) NOT NULL, script varchar(1000) NOT NULL, "
            "checksum int, installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(), "
            "execution_time int NOT NULL, success boolean NOT NULL)"
        )
        for n, path in enumerate(ups[:2], 1):
            conn.execute(
                "INSERT INTO flyway_schema_history VALUES (%s, %s, 'x', 'SQL', %s, %s, 'flyway', now(), 5, true)",
                (n, str(n), path.name, java_readline_crc32(path.read_bytes())),
            )
    _import(folder)
    console = _console(settings, folder, url)
    _to_success(console)
    assert (
        "shows 1 applied, skipped" in console.everything()
        and "shows 2 applied, skipped" in console.everything()
    )
    reference = scratch_db()
    folders.psql_each(reference, ups)
    assert folders.schema(url) == folders.schema(reference)
    assert _rows(url, "SELECT installed_rank, version, script FROM flyway_schema_history ORDER BY 1") == [
        (n, str(n), p.name) for n, p in enumerate(ups, 1)
    ]


def test_dirty_golang_migrate_ledger_is_a_no_go_with_the_reason(settings, scratch_db, tmp_path):
    folder = tmp_path / "updown"
    folders.updown(folder)
    url = scratch_db()
    with psycopg.connect(url) as conn:  # what golang-migrate leaves when migration 3 failed part-way
        conn.execute(
            "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)"
        )
        conn.execute("INSERT INTO schema_migrations VALUES (3, true)")
    _import(folder)
    code, out = _console(settings, folder, url)(COORDINATOR, "preflight")
    assert code == 1 and "NO-GO" in out
    assert "dirty at version 3" in out and "migrate force 2" in out


def test_failed_migration_leaves_golang_migrate_dirty_and_the_template_says_how_to_resolve(
    settings, scratch_db, tmp_path
):
    folder = tmp_path / "updown"
    folders.updown(folder)
    url = scratch_db()
    # Fails on the production database only (the rehearsal's copy has another name): a real run's failure.
    (folder / "0004_login_view.up.sql").write_text(
        folders.MIGRATIONS[3][1]
        + f"DO $$ BEGIN IF current_database() = '{url.rsplit('/', 1)[1]}' THEN RAISE 'disk full'; END IF; END $$;\n"
    )
    _import(folder)
    console = _console(settings, folder, url)
    for user, text in ((COORDINATOR, "preflight"), (TPM, "approve")):
        code, out = console(user, text)
        assert code == 0, out
    code, out = console(COORDINATOR, "run")
    assert code == 1
    assert _rows(url, "SELECT version, dirty FROM schema_migrations") == [(4, True)]
    assert "dirty at version 4" in out and "migrate force 3" in out
    code, out = console(COORDINATOR, "run phase 4")  # as golang-migrate: nothing runs on a dirty ledger
    assert code == 1 and "not run: schema_migrations is dirty at version 4" in out
    assert _rows(url, "SELECT to_regclass('logins')::text") == [(None,)]


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"0001_a.up.sql": "x", "0003_c.up.sql": "x"}, "a gap in versions: 2 missing"),
        ({"0001_a.up.sql": "x", "0002_b.down.sql": "x"}, "0002_b.down.sql has no up file for version 2"),
        (
            {"0001_a.up.sql": "x", "0001_b.up.sql": "x"},
            "two files for version 1: 0001_a.up.sql, 0001_b.up.sql",
        ),
        ({"V1__a.sql": "x", "V1_0__b.sql": "x"}, "two files for version 1"),
        ({"V1__a.sql": "x", "U2__b.sql": "x"}, "U2__b.sql undoes version 2, which has no V2__"),
        ({"V1__a.sql": "x", "V3__c.sql": "x"}, "a gap in versions: 2 missing"),
        ({"notes.txt": "x"}, "nothing recognised in"),
        (
            {"V1__a.sql": "CREATE TABLE ${schema}.t (id int);"},
            "V1__a.sql uses the Flyway placeholder ${schema}",
        ),
        (
            {
                "20240101120000_users.sql": "-- migrate:up\nCREATE TABLE u (id int);\n-- migrate:down\nDROP TABLE u;\n"
            },
            "holds dbmate's `-- migrate:up` / `-- migrate:down` sections",
        ),
        (
            {"sqitch.plan": "%project=p\n\nusers 2026-01-01T00:00:00Z A <a@b.c> # users\n"},
            "names change users but deploy/users.sql is missing",
        ),
        (
            {
                "sqitch.plan": "%project=p\n\nusers [roles] 2026-01-01T00:00:00Z A <a@b.c>\n",
                "deploy/users.sql": "x",
            },
            "users requires roles, which is not earlier in the plan",
        ),
    ],
)
def test_inconsistent_folders_are_refused_with_one_line(tmp_path, capsys, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert main(["import", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "expected" in err
    assert not (tmp_path / "runbook.toml").exists()


def _sqitch(folder: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    """The real sqitch (Debian package `sqitch` + libdbd-pg-perl, installed by .ci/run) on the folder."""
    target = "db:" + url.replace("postgresql://", "pg://")
    env = {**os.environ, "SQITCH_USER_NAME": "CI", "SQITCH_USER_EMAIL": "ci@example.org", "HOME": str(folder)}
    return subprocess.run(
        ["sqitch", *args, "--target", target], cwd=folder, capture_output=True, text=True, env=env
    )


def test_sqitch_project_from_import_to_rollback_all_agrees_with_sqitch(
    settings, scratch_db, tmp_path, capsys
):
    folder = tmp_path / "sqitch"
    deploys = folders.sqitch(folder)
    _import(folder)
    printed = capsys.readouterr().out
    assert (
        "layout sqitch, ledger sqitch: 4 migrations (accounts … logins)" in printed
        and "verify scripts: 4" in printed
    )
    url, reference, empty = scratch_db(), scratch_db(), folders.schema(scratch_db())
    console = _console(settings, folder, url)
    _to_success(console)
    assert console.everything().count("Suite verify ") >= 4  # each change's verify script, right after it
    folders.psql_each(reference, deploys)
    assert folders.schema(url) == folders.schema(reference)

    status = _sqitch(folder, url, "status")
    assert status.returncode == 0 and "Nothing to deploy (up-to-date)" in status.stdout, (
        status.stdout + status.stderr
    )
    verify = _sqitch(folder, url, "verify")
    assert verify.returncode == 0 and "Verify successful" in verify.stdout, verify.stdout + verify.stderr
    plan = load_plan(folder / "sqitch.plan")
    rows = _rows(
        url,
        "SELECT change_id, change, project, note, planner_name, planner_email, "
        "to_char(planned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), script_hash, committer_name "
        "FROM sqitch.changes ORDER BY committed_at",
    )
    assert rows == [
        (
            c.id,
            c.name,
            "ledgerdemo",
            c.note,
            "Ada Planner",
            "ada@example.org",
            c.planned_at,
            hashlib.sha1((folder / "deploy" / c.script).read_bytes()).hexdigest(),
            COORDINATOR,
        )
        for c in plan.changes
    ]
    assert _rows(url, "SELECT tag, change_id FROM sqitch.tags") == [("@v1.0", plan.changes[1].id)]
    assert _rows(
        url, "SELECT change_id, type, dependency, dependency_id FROM sqitch.dependencies ORDER BY 1, 3"
    ) == sorted(
        [
            (plan.changes[1].id, "require", "accounts", plan.changes[0].id),
            (plan.changes[2].id, "require", "email_idx@v1.0", plan.changes[1].id),
            (plan.changes[3].id, "require", "accounts", plan.changes[0].id),
        ]
    )
    assert _rows(url, "SELECT event, change FROM sqitch.events ORDER BY committed_at") == [
        ("deploy", c.name) for c in plan.changes
    ]

    code, out = console(COORDINATOR, "rollback all")
    assert code == 0, out
    assert folders.schema(url) == empty
    status = _sqitch(folder, url, "status")
    assert "No changes deployed" in status.stdout, status.stdout + status.stderr
    assert _rows(
        url, "SELECT event, change FROM sqitch.events WHERE event = 'revert' ORDER BY committed_at"
    ) == [("revert", c.name) for c in reversed(plan.changes)]
    assert _rows(url, "SELECT count(*) FROM sqitch.changes") == [(0,)]


def test_sqitch_change_ids_are_the_ones_sqitch_computes(tmp_path):
    """`sqitch plan --format` prints each change's id as sqitch computes it."""
    folder = tmp_path / "sqitch"
    folders.sqitch(folder)
    env = {**os.environ, "HOME": str(folder)}
    out = subprocess.run(
        ["sqitch", "plan", "--no-headers", "--format", "format:%H %n"],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    expected = [line.split() for line in out.stdout.splitlines() if line.strip()]
    plan = load_plan(folder / "sqitch.plan")
    assert [[c.id, c.name] for c in plan.changes] == expected
    [tag] = [
        t for c in plan.changes for t in c.tags
    ]  # a tag's id is the SHA-1 of what `sqitch show tag` prints
    shown = subprocess.run(
        ["sqitch", "show", "tag", "@v1.0"], cwd=folder, capture_output=True, text=True, env=env
    )
    assert shown.stdout.strip() == tag_info(plan, tag)


def test_plain_folder_grouped_with_an_owner_needs_no_ledger_table(settings, scratch_db, tmp_path, capsys):
    """Plain files in name order, two per phase, owned by the database engineer; the bot's own
    ledger (no schema_migrations anywhere), no rollback."""
    folder = tmp_path / "plain"
    ups = folders.plain(folder)
    (folder / "notes.txt").write_text("x")
    assert (
        main(
            [
                "import",
                str(folder),
                "--group",
                "2",
                "--owner",
                "database-engineer",
                "--out",
                str(tmp_path / "plain.toml"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "0 present, 5 missing" in printed and "ignored notes.txt: not a .sql file" in printed
    rb = load_runbook(tmp_path / "plain.toml")
    assert [len(p.steps) for p in rb.phases] == [2, 2, 1] and {p.owner for p in rb.phases} == {
        "database-engineer"
    }
    assert rb.ledger.kind == "bot" and all(p.rollback is None for p in rb.phases)
    url, reference = scratch_db(), scratch_db()
    console = Console(
        Core.from_settings(settings.with_(database_url=url, runbook_path=tmp_path / "plain.toml", **NO_006))
    )
    _to_success(console)
    folders.psql_each(reference, ups)
    assert folders.schema(url) == folders.schema(reference)
    assert _rows(url, "SELECT to_regclass('schema_migrations')::text") == [(None,)]
    assert sorted(r[0] for r in _rows(url, "SELECT file FROM migrate_bot.applied_files")) == [
        f"plain/{p.name}" for p in ups
    ]


def _approved(console: Console) -> None:
    for user, text in ((COORDINATOR, "preflight"), (TPM, "approve")):
        code, out = console(user, text)
        assert code == 0, out


def _fails_in_production(path: Path, url: str, before: str = "") -> None:
    """Make `path` fail on the production database only (the rehearsal's copy has another name)."""
    text = path.read_text()
    raise_ = f"DO $$ BEGIN IF current_database() = '{url.rsplit('/', 1)[1]}' THEN RAISE 'disk full'; END IF; END $$;\n"
    path.write_text(text.replace("COMMIT;", raise_ + "COMMIT;") if "COMMIT;" in text else text + raise_)


def test_sqitch_plan_is_bound_by_the_approval_and_a_failed_deploy_logs_a_fail_event(
    settings, scratch_db, tmp_path
):
    folder = tmp_path / "sqitch"
    folders.sqitch(folder)
    url = scratch_db()
    _fails_in_production(folder / "deploy" / "logins.sql", url)
    _import(folder)
    console = _console(settings, folder, url)
    _approved(console)
    plan_text = (folder / "sqitch.plan").read_text()
    (folder / "sqitch.plan").write_text(plan_text.replace("# Login view", "# Login view, edited"))
    code, out = console(COORDINATOR, "run")
    assert (
        code == 2 and "sqitch.plan" in out
    )  # the ledger's rows come from the plan: it is part of what was approved
    (folder / "sqitch.plan").write_text(plan_text)
    code, out = console(COORDINATOR, "run")
    assert code == 1 and "a `fail` event logged as sqitch does" in out
    assert _rows(url, "SELECT event, change FROM sqitch.events ORDER BY committed_at")[-1] == (
        "fail",
        "logins",
    )
    status = _sqitch(folder, url, "status")
    assert "Undeployed change:" in status.stdout and "* logins" in status.stdout, (
        status.stdout + status.stderr
    )


def test_failed_flyway_migration_leaves_no_history_row(settings, scratch_db, tmp_path):
    folder = tmp_path / "flyway"
    folders.flyway(folder)
    url = scratch_db()
    _fails_in_production(folder / "V3__Rename_email.sql", url)
    _import(folder)
    console = _console(settings, folder, url)
    _approved(console)
    code, out = console(COORDINATOR, "run")
    assert code == 1 and "no row for V3__Rename_email.sql" in out and "no `flyway repair` needed" in out
    assert _rows(url, "SELECT version, success FROM flyway_schema_history ORDER BY installed_rank") == [
        ("1", True),
        ("2", True),
    ]
