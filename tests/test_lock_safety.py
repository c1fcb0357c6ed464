"""Lock safety before GO (issue 16): squawk's findings on the files the run executes, judged with
the target's real table sizes and the runbook's waivers; real PostgreSQL, the real squawk binary."""

from __future__ import annotations

import hashlib
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from commands import Core
from preflight import lint
from runbook.model import RunbookError, load_runbook
from sql import DEFAULT_RUNBOOK
from tests.support import pg
from tests.support.flow import COORDINATOR, LIU, TPM, Console
from tests.support.runbooks import append_to_file, copy_runbook

BIG_ROWS = 120_000  # above the default threshold of 100,000 rows
RULE = "require-concurrent-index-creation"
INDEX_ON_BIG = "CREATE INDEX big_events_payload_idx ON public.big_events (payload);"
WAIVER = f'''
[[waivers]]
rule = "{RULE}"
file = "add_index.sql"
statement = "CREATE INDEX big_events_payload_idx"
reason = "big_events takes no writes during the window (batch loader paused)"
who = "database-engineer"
'''


def fill_big_table(url: str, rows: int = BIG_ROWS) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.big_events (id bigint PRIMARY KEY, payload text NOT NULL)")
        conn.execute(
            "INSERT INTO public.big_events SELECT g, md5(g::text) FROM generate_series(1, %s) g", (rows,)
        )
        conn.execute("ANALYZE public.big_events")


def one_step_runbook(tmp_path: Path, sql: str, extra: str = "") -> Path:
    """A one-phase runbook whose only step runs `sql` (file add_index.sql)."""
    folder = tmp_path / "rb900"
    folder.mkdir()
    (folder / "add_index.sql").write_text(textwrap.dedent(sql).strip() + "\n")
    (folder / "runbook.toml").write_text(
        textwrap.dedent("""
        [runbook]
        id = "900"
        version = "900"

        [[phases]]
        number = 1
        name = "Index events"
        owner = "database-engineer"

        [[phases.steps]]
        id = "1.1"
        file = "add_index.sql"
        """)
        + extra
    )
    return folder / "runbook.toml"


def judged(settings, runbook: Path):
    line, result = lint.check_line(settings, load_runbook(runbook))
    assert result is not None, line.observed
    return line, result


def test_squawk_is_installed_with_the_bot_and_its_version_is_reported(settings, tmp_path):
    binary = lint.squawk_binary()
    assert binary is not None and Path(binary).parent == Path(sys.executable).parent
    line, result = judged(settings, one_step_runbook(tmp_path, "SELECT 1;"))
    assert result.squawk.startswith("squawk 2.") and result.squawk in line.how
    assert result.pg_version.startswith("15.") and f"--pg-version {result.pg_version}" in line.how


def test_plain_create_index_on_a_big_table_is_nogo_naming_rule_size_and_lock(settings, tmp_path):
    fill_big_table(settings.database_url)
    line, result = judged(settings, one_step_runbook(tmp_path, INDEX_ON_BIG))
    assert line.status == "fail"
    blocking = result.blocking
    assert [f.rule for f in blocking] == [RULE]  # squawk rates it a warning; the table's size makes it block
    finding = blocking[0]
    assert finding.level == "warning" and finding.file == "add_index.sql" and finding.line == 1
    assert finding.locks == ["SHARE on public.big_events"]
    table = finding.tables[0]
    assert table["rows"] >= 100_000 and table["bytes"] == pg.scalar(
        settings.database_url, "SELECT pg_total_relation_size('public.big_events')"
    )
    for word in (
        RULE,
        "add_index.sql:1",
        "SHARE on public.big_events",
        "public.big_events: ~1",
        " MB",
        "BLOCKS",
    ):
        assert word in line.observed, line.observed


def test_the_same_index_on_a_small_table_is_shown_and_does_not_block(settings, tmp_path):
    fill_big_table(settings.database_url, rows=500)
    line, result = judged(settings, one_step_runbook(tmp_path, INDEX_ON_BIG))
    assert line.status == "pass", line.observed
    [finding] = [f for f in result.findings if f.rule == RULE]
    assert not finding.blocks and "below the threshold" in finding.why


def test_an_index_on_a_table_created_earlier_in_the_same_file_does_not_block(settings, tmp_path):
    fill_big_table(settings.database_url)
    # Atomic: the executor wraps the file in one transaction (squawk's --assume-in-transaction),
    # so squawk itself knows the table is new and has nothing to say about the index.
    atomic = one_step_runbook(
        tmp_path,
        """
        CREATE TABLE public.events_copy (LIKE public.big_events);
        CREATE INDEX events_copy_payload_idx ON public.events_copy (payload);
    """,
    )
    line, result = judged(settings, atomic)
    assert line.status == "pass", line.observed
    assert not [f for f in result.findings if f.rule == RULE]
    # In autocommit (the file also builds an index concurrently) squawk reports it: shown, and it
    # does not block, because the table is not on the target (this run creates it).
    (tmp_path / "rb900").rename(tmp_path / "atomic")
    loose = one_step_runbook(
        tmp_path,
        """
        CREATE TABLE IF NOT EXISTS public.events_copy (LIKE public.big_events);
        CREATE INDEX IF NOT EXISTS events_copy_payload_idx ON public.events_copy (payload);
        CREATE INDEX CONCURRENTLY IF NOT EXISTS big_events_id_payload_idx ON public.big_events (id, payload);
    """,
    )
    line, result = judged(settings, loose)
    assert line.status == "pass", line.observed
    [shown] = [f for f in result.findings if f.rule == RULE]
    assert shown.line == 2 and not shown.blocks
    assert (
        "not on the target (created by this run)" in shown.text()
        and "SHARE on public.events_copy" in shown.text()
    )


def test_a_waiver_lets_the_finding_pass_and_is_kept_with_reason_and_role(settings, tmp_path):
    fill_big_table(settings.database_url)
    line, result = judged(settings, one_step_runbook(tmp_path, INDEX_ON_BIG, WAIVER))
    assert line.status == "pass", line.observed
    [finding] = [f for f in result.findings if f.rule == RULE]
    assert finding.blocking and not finding.blocks
    assert (
        finding.waiver["reason"].startswith("big_events takes no writes")
        and finding.waiver["who"] == "database-engineer"
    )
    assert result.waivers == [{**finding.waiver, "used": True}]


def test_a_waiver_for_another_statement_does_not_cover_the_finding(settings, tmp_path):
    fill_big_table(settings.database_url)
    other = WAIVER.replace("CREATE INDEX big_events_payload_idx", "CREATE INDEX some_other_idx")
    line, result = judged(settings, one_step_runbook(tmp_path, INDEX_ON_BIG, other))
    assert line.status == "fail" and [f.rule for f in result.blocking] == [RULE]
    assert result.waivers[0]["used"] is False


def test_a_waiver_must_name_a_roster_role_and_a_reason(settings, tmp_path):
    fill_big_table(settings.database_url)
    line, result = judged(
        settings, one_step_runbook(tmp_path, INDEX_ON_BIG, WAIVER.replace("database-engineer", "intern"))
    )
    assert line.status == "fail" and "waiver `who` intern is not a role of the roster" in line.observed
    (tmp_path / "rb900").rename(tmp_path / "first")
    with pytest.raises(RunbookError, match="missing `reason`"):
        load_runbook(one_step_runbook(tmp_path, INDEX_ON_BIG, WAIVER.replace('reason = "', 'note = "')))


def test_access_exclusive_on_a_table_above_high_risk_size_is_high_risk_even_if_squawk_is_silent(
    settings, tmp_path
):
    fill_big_table(settings.database_url)
    runbook = one_step_runbook(
        tmp_path,
        "ALTER TABLE public.big_events ENABLE ROW LEVEL SECURITY;",
        '\n[lock_safety]\nhigh_risk_bytes = "1MB"\n',
    )
    line, result = judged(settings, runbook)
    assert not [f for f in result.findings if f.statement.startswith("ALTER TABLE")]  # squawk: nothing to say
    [risk] = result.high_risk
    assert risk["table"] == "public.big_events" and risk["line"] == 1 and risk["bytes"] > 1024**2


def test_squawk_sees_psql_files_as_the_parser_does(settings, tmp_path):
    """A file with psql variables and meta-commands is linted on the parser's text (same lines)."""
    fill_big_table(settings.database_url)
    line, result = judged(
        settings,
        one_step_runbook(
            tmp_path,
            """
        \\set tag 'x'
        SELECT :'tag';
        CREATE INDEX big_events_payload_idx ON public.big_events (payload);
    """,
        ),
    )
    assert [f"{f.rule}@{f.line}" for f in result.blocking] == [f"{RULE}@3"]
    assert not [f for f in result.findings if f.rule == "syntax-error"]


def test_006_has_no_blocking_finding(settings):
    line, result = judged(settings, DEFAULT_RUNBOOK)
    assert line.status == "pass", line.observed
    assert "006_enable_rls_IMPROVED.sql" in result.files and "rollback-006.sql" in result.files
    assert "006_enable_rls_with_permissive_policies.sql" not in result.files  # option B does not run
    assert not result.blocking and not result.high_risk


# ------------------------------------------------------------------ end to end through the console


def big_index_runbook(tmp_path: Path) -> Path:
    """006 with a step 1.3 building a plain index on public.big_events (undone by the phase's rollback)."""
    runbook = copy_runbook(tmp_path)
    (runbook.parent / "add_index.sql").write_text(INDEX_ON_BIG + "\n")
    append_to_file(runbook, "rollback-006.sql", "DROP INDEX IF EXISTS public.big_events_payload_idx;")
    text = runbook.read_text()
    anchor = '[[phases.checks]]\nname = "platform.databases has 15 columns"'
    runbook.write_text(
        text.replace(anchor, '[[phases.steps]]\nid = "1.3"\nfile = "add_index.sql"\n\n' + anchor, 1)
    )
    return runbook


def test_waiver_in_go_no_go_request_report_and_approval_and_a_changed_waiver_refuses_run(ready, tmp_path):
    fill_big_table(ready.database_url)
    runbook = big_index_runbook(tmp_path)
    console = Console(Core.from_settings(ready.with_(runbook_path=runbook)))

    code, out = console(COORDINATOR, "preflight")
    assert code == 1 and "pre-flight: NO-GO" in out
    assert RULE in out and "SHARE on public.big_events" in out and "public.big_events: ~1" in out

    runbook.write_text(runbook.read_text() + WAIVER)
    console = Console(Core.from_settings(ready.with_(runbook_path=runbook)))
    code, out = console(COORDINATOR, "preflight")
    assert code == 0, out
    request = out[out.index("Requesting go/no-go decision") :]
    assert f"Waiver: {RULE} in add_index.sql" in request and "batch loader paused" in request
    assert "role database-engineer" in request and "squawk 2." in request
    assert "held" in out and "on the copy" in out  # the rehearsal's lock-holding time next to the finding

    code, out = console(TPM, "approve")
    assert code == 0, out
    run = console.core.store.current()
    assert run.approval["checksums"].get("runbook.toml") == hashlib.sha256(runbook.read_bytes()).hexdigest()

    code, out = console(COORDINATOR, "report")
    assert (
        code == 0 and "### Lock safety" in out and "batch loader paused" in out and "database-engineer" in out
    )

    runbook.write_text(runbook.read_text().replace("batch loader paused", "trust me"))  # the waiver changed
    code, out = console(LIU, "run phase 1")
    assert code == 2, out
    assert "runbook.toml" in out and "changed" in out
    assert f"waiver {RULE} add_index.sql" in out  # the change is named: which waiver
    assert pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases') IS NULL")


def test_drop_index_on_a_big_table_is_judged_by_the_table_it_locks(settings, tmp_path):
    fill_big_table(settings.database_url)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("CREATE INDEX big_events_payload_idx ON public.big_events (payload)")
    line, result = judged(
        settings, one_step_runbook(tmp_path, "DROP INDEX IF EXISTS public.big_events_payload_idx;")
    )
    [finding] = [f for f in result.findings if f.rule == "require-concurrent-index-deletion"]
    assert finding.blocks and "ACCESS EXCLUSIVE on public.big_events" in finding.locks
    assert line.status == "fail" and "public.big_events: ~1" in line.observed
