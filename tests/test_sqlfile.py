"""runbook.sqlfile: statements, lines, meta-commands, transactionality and locks, as
PostgreSQL's parser sees them (no database involved)."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook.sqlfile import SqlFileError, parse_file, parse_text


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def sql_of(parsed):
    return [(s.line, s.sql) for s in parsed.statements if s.kind == "sql"]


def test_dollar_quoted_bodies_comments_and_semicolons_in_strings(tmp_path):
    path = write(
        tmp_path,
        "f.sql",
        """
        -- a comment; with a semicolon
        CREATE TABLE t (s text DEFAULT 'a;b');
        /* block; comment */
        DO $$
        BEGIN
          RAISE NOTICE 'x;y';
        END $$;
        CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $body$
        BEGIN
          RETURN 'q;';  -- inner comment;
        END
        $body$;
        SELECT 'it''s; fine';
    """,
    )
    parsed = parse_file(path)
    assert [line for line, _ in sql_of(parsed)] == [2, 4, 8, 13]
    assert sql_of(parsed)[1][1].startswith("DO $$") and sql_of(parsed)[1][1].endswith("END $$")
    assert "RETURN 'q;';" in sql_of(parsed)[2][1]
    assert sql_of(parsed)[3][1] == "SELECT 'it''s; fine'"
    assert parsed.atomic and not parsed.needs_psql and not parsed.manages_transaction
    assert [s.index for s in parsed.statements] == [1, 2, 3, 4]


def test_stray_raise_notice_outside_do_block_is_refused_with_its_line(tmp_path):
    # The real-world RLS migration: RAISE NOTICE after the DO block ended.
    path = write(
        tmp_path,
        "006_enable_rls_bad.sql",
        """
        ALTER TABLE platform.users ENABLE ROW LEVEL SECURITY;
        DO $$ BEGIN
          RAISE NOTICE 'enabled';
        END $$;

        RAISE NOTICE 'done';
        CREATE POLICY p ON platform.users FOR SELECT USING (true);
    """,
    )
    with pytest.raises(SqlFileError) as err:
        parse_file(path)
    assert (err.value.file, err.value.line) == ("006_enable_rls_bad.sql", 6)
    assert 'syntax error at or near "RAISE"' in err.value.message
    assert str(err.value).startswith("006_enable_rls_bad.sql:6: ")


def test_unterminated_dollar_quote_is_refused(tmp_path):
    path = write(tmp_path, "u.sql", "SELECT 1;\nDO $$ BEGIN\n  RAISE NOTICE 'x';\n")
    with pytest.raises(SqlFileError) as err:
        parse_file(path)
    assert err.value.line == 2 and "dollar-quoted" in err.value.message


def test_meta_commands_and_variables(tmp_path):
    path = write(
        tmp_path,
        "suite.sql",
        """
        \\set ON_ERROR_STOP on
        \\echo Test 1
        SELECT count(*) AS n FROM pg_tables \\gset
        \\if :n
        SELECT :'label' AS label, :'n'::int + 1 AS next, (ARRAY[1,2,3])[1:2];
        \\endif
    """,
    )
    parsed = parse_file(path)
    kinds = [(s.line, s.kind) for s in parsed.statements]
    assert kinds == [(1, "meta"), (2, "meta"), (3, "sql"), (3, "meta"), (4, "meta"), (5, "sql"), (6, "meta")]
    assert parsed.needs_psql
    assert parsed.statements[2].sql == "SELECT count(*) AS n FROM pg_tables"
    assert parsed.statements[5].sql.startswith("SELECT :'label' AS label, :'n'::int")


def test_copy_to_stdout_needs_psql(tmp_path):
    assert parse_file(write(tmp_path, "c.sql", "COPY (SELECT 1) TO STDOUT;\n")).needs_psql
    assert not parse_file(write(tmp_path, "d.sql", "COPY t FROM '/tmp/x.csv';\n")).needs_psql


def test_array_slice_is_not_a_variable(tmp_path):
    parsed = parse_file(write(tmp_path, "a.sql", "SELECT (ARRAY[1,2,3])[1:2], 1::int;\n"))
    assert not parsed.needs_psql


def test_non_transactional_statements_detected(tmp_path):
    parsed = parse_file(
        write(
            tmp_path,
            "c.sql",
            """
        CREATE TABLE t (a int);
        CREATE INDEX CONCURRENTLY t_a ON t (a);
        VACUUM t;
        ANALYZE t;
        DROP INDEX CONCURRENTLY t_a;
        REINDEX TABLE CONCURRENTLY t;
        ALTER SYSTEM SET work_mem = '8MB';
    """,
        )
    )
    assert [s.transactional for s in parsed.statements] == [True, False, False, True, False, False, False]
    assert not parsed.atomic


def test_lock_levels_from_the_parse_tree(tmp_path):
    parsed = parse_file(
        write(
            tmp_path,
            "l.sql",
            """
        ALTER TABLE platform.users ENABLE ROW LEVEL SECURITY;
        ALTER TABLE platform.users ADD COLUMN x int;
        ALTER TABLE platform.users VALIDATE CONSTRAINT c;
        ALTER TABLE platform.users ADD CONSTRAINT fk FOREIGN KEY (org) REFERENCES platform.organizations (id);
        CREATE INDEX i ON platform.projects (name);
        CREATE INDEX CONCURRENTLY j ON platform.projects (slug);
        CREATE POLICY p ON platform.users FOR SELECT USING (true);
        DROP POLICY p ON platform.users;
        CREATE TRIGGER tr BEFORE UPDATE ON platform.users FOR EACH ROW EXECUTE FUNCTION f();
        CREATE TABLE platform.databases (id uuid, project_id uuid REFERENCES platform.projects (id));
        INSERT INTO platform.audit_logs DEFAULT VALUES;
    """,
        )
    )
    assert [s.locks for s in parsed.statements] == [
        (("ACCESS EXCLUSIVE", "platform.users"),),
        (("ACCESS EXCLUSIVE", "platform.users"),),
        (("SHARE UPDATE EXCLUSIVE", "platform.users"),),
        (("SHARE ROW EXCLUSIVE", "platform.users"), ("SHARE ROW EXCLUSIVE", "platform.organizations")),
        (("SHARE", "platform.projects"),),
        (("SHARE UPDATE EXCLUSIVE", "platform.projects"),),
        (("ACCESS EXCLUSIVE", "platform.users"),),
        (("ACCESS EXCLUSIVE", "platform.users"),),
        (("SHARE ROW EXCLUSIVE", "platform.users"),),
        (("SHARE ROW EXCLUSIVE", "platform.projects"),),
        (("ROW EXCLUSIVE", "platform.audit_logs"),),
    ]


def test_own_begin_commit_is_recognised(tmp_path):
    parsed = parse_file(write(tmp_path, "b.sql", "BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;\n"))
    assert parsed.manages_transaction and parsed.atomic
    assert [s.sql for s in parsed.body] == ["CREATE TABLE t (a int)"]
    assert not parsed.ends_in_rollback


def test_begin_rollback_test_script_is_recognised(tmp_path):
    parsed = parse_file(write(tmp_path, "t.sql", "BEGIN;\nSELECT 1;\nROLLBACK;\n"))
    assert parsed.manages_transaction and parsed.ends_in_rollback


@pytest.mark.parametrize(
    "text, line",
    [
        ("BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;\nCREATE TABLE u (a int);\n", 3),  # COMMIT half-way
        ("BEGIN;\nCREATE TABLE t (a int);\nROLLBACK;\nCREATE TABLE u (a int);\n", 3),
        ("CREATE TABLE t (a int);\nCOMMIT;\n", 2),
        ("BEGIN;\nCREATE TABLE t (a int);\n", 1),  # BEGIN without COMMIT
    ],
)
def test_unsafe_transaction_control_is_refused(tmp_path, text, line):
    with pytest.raises(SqlFileError) as err:
        parse_file(write(tmp_path, "x.sql", text))
    assert err.value.line == line and "half-applied" in err.value.message


def test_checksum_is_of_the_file_bytes(tmp_path):
    import hashlib

    path = write(tmp_path, "s.sql", "SELECT 1;\n")
    assert parse_file(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abc ;'$\n", max_size=12), min_size=1, max_size=6))
def test_string_contents_never_split_statements(contents):
    """Any string literal content (as a dollar-quoted body) keeps one statement per line."""
    lines = [f"SELECT $q${c}$q$ AS v;" for c in contents if "$q$" not in c]
    text = "\n".join(lines)
    parsed = parse_text(text)
    assert len(parsed.statements) == len(lines)
    starts = [s.line for s in parsed.statements]
    assert starts == sorted(starts)


# ------------------------------------------------------------------ runbook validation


def _runbook(tmp_path, files: dict[str, str]):
    from runbook.model import load_runbook

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "runbook.toml").write_text(
        textwrap.dedent("""
        [runbook]
        id = "T"
        version = "T"
        [[do_not_run]]
        file = "later.sql"
        reason = "needs the app first"
        [[phases]]
        number = 1
        name = "one"
        owner = "database-engineer"
        rollback = "undo.sql"
        [[phases.steps]]
        id = "1.1"
        file = "forward.sql"
        on_failure = "rollback"
        rollback = "undo.sql"
        [[phases.steps]]
        id = "1.2"
        file = "stray.sql"
    """)
    )
    return load_runbook(tmp_path / "runbook.toml")


def test_validate_runbook_checks_every_file_before_anything_runs(tmp_path):
    from runbook.validate import checksums, refuse_file, validate_runbook

    rb = _runbook(
        tmp_path,
        {
            "forward.sql": "CREATE TABLE t (a int);\n",
            "later.sql": "DROP TABLE t;\n",
            "stray.sql": "SELECT 1;\nRAISE NOTICE 'x';\n",
        },
    )
    checks = {c.name: c for c in validate_runbook(rb)}
    assert list(checks) == ["forward.sql", "undo.sql", "stray.sql"]
    assert checks["forward.sql"].ok and checks["forward.sql"].statements == 1 and checks["forward.sql"].atomic
    assert not checks["undo.sql"].ok and "not found" in checks["undo.sql"].problem
    assert not checks["stray.sql"].ok and checks["stray.sql"].problem.startswith("stray.sql:2: syntax error")
    assert set(checksums(rb)) == {
        "forward.sql",
        "stray.sql",
        "runbook.toml",
    }  # the runbook itself is bound too
    assert refuse_file(rb, "forward.sql") is None
    assert "DO NOT RUN" in refuse_file(rb, "later.sql") and "needs the app first" in refuse_file(
        rb, "later.sql"
    )
    assert "not part of runbook T" in refuse_file(rb, "other.sql")
    assert refuse_file(rb, "stray.sql").startswith("stray.sql:2:")


def test_shipped_runbook_006_validates():
    from runbook.model import load_runbook
    from runbook.validate import refuse_file, validate_runbook
    from sql import DEFAULT_RUNBOOK

    rb = load_runbook(DEFAULT_RUNBOOK)
    problems = [(c.name, c.problem) for c in validate_runbook(rb) if not c.ok]
    assert problems == []
    for name in rb.do_not_run:
        assert "DO NOT RUN" in refuse_file(rb, name)


def test_lock_plan_strongest_level_per_table_in_file_order(tmp_path):
    from engine.locks import lock_plan

    parsed = parse_file(
        write(
            tmp_path,
            "p.sql",
            """
        INSERT INTO platform.audit_logs DEFAULT VALUES;
        CREATE INDEX i ON platform.projects (name);
        ALTER TABLE platform.users ENABLE ROW LEVEL SECURITY;
        CREATE POLICY p ON platform.projects FOR SELECT USING (true);
        CREATE TRIGGER t BEFORE UPDATE ON platform.users FOR EACH ROW EXECUTE FUNCTION f();
    """,
        )
    )
    plan = [(lock.level, lock.relation, lock.statement.line) for lock in lock_plan(parsed)]
    # DML-only tables are not pre-locked; projects: SHARE then ACCESS EXCLUSIVE -> the stronger,
    # attributed to the statement that needs it, in the order the file first touches tables.
    assert plan == [("ACCESS EXCLUSIVE", "platform.projects", 4), ("ACCESS EXCLUSIVE", "platform.users", 3)]


@pytest.mark.parametrize(
    "text, line, says",
    [
        ("SELECT 1;\n\\i more_changes.sql\n", 2, "`\\i` includes another file"),
        ("\\ir ../elsewhere.sql\n", 1, "`\\ir` includes another file"),
        ("\\include_relative x.sql\n", 1, "`\\include_relative` includes another file"),
        ("SELECT 1;\n\n\\! psql -c 'DROP TABLE users'\n", 3, "`\\!` runs a shell command"),
        ("\\c production_replica\nDELETE FROM t;\n", 1, "`\\c` switches to another database"),
        ("\\copy t FROM PROGRAM 'curl http://x'\n", 1, "`\\copy` may only use stdin/stdout"),
        (
            "CREATE TABLE t (a text);\nCOPY t FROM PROGRAM 'cat /etc/passwd';\n",
            2,
            "COPY … PROGRAM runs a shell command",
        ),
        ("\\set who `whoami`\n", 1, "backticks in `\\set` run a shell command"),
        ("\\o |mail ops@example.com\nSELECT 1;\n", 1, "`\\o` writes to a file or a shell command"),
        ("\\w |sh\n", 1, "`\\w` writes to a file or a shell command"),
        ("SELECT 1\n\\g |sh\n", 2, "`\\g |sh` writes to a file or a shell command"),
        ("SELECT 1 \\g |sh\n", 1, "`\\g |sh` writes to a file or a shell command"),
        ("\\echo hi \\! rm -rf /tmp/x\n", 1, "a backslash in the arguments of `\\echo`"),
        (
            "SELECT 'DROP TABLE ' || relname FROM pg_class \\gexec\n",
            1,
            "`\\gexec` runs SQL built while the file runs",
        ),
        ("\\lo_import /etc/passwd\n", 1, "`\\lo_import` is not a meta-command a runbook file may use"),
        (
            "\\copy t TO '/srv/app/.venv/lib/python3.11/site-packages/x.pth'\n",
            1,
            "`\\copy` may only use stdin/stdout",
        ),
        ("\\COPY t FROM '.local/demo_services.env'\n", 1, "`\\copy` may only use stdin/stdout"),
        (
            "\\copy t to '/tmp/x' with (format csv, null 'to stdout ')\n",
            1,
            "`\\copy` may only use stdin/stdout",
        ),
        # psql reads an unquoted variable's value again: a backslash (or a quote) in it is input
        ("\\set x '\\134! touch /tmp/pwned'\n", 1, "a backslash in the arguments of `\\set`"),
        ("\\set q ''''\nSELECT :q AS a, 'x';\n", 2, "`:q` is pasted unquoted and read again by psql"),
        ("SELECT 'x' AS v \\gset\nSELECT :v;\n", 2, "`:v` is pasted unquoted"),
        ("SELECT 'x' AS q \\gset\nSELECT (ARRAY[1,2])[1:q];\n", 2, "`:q` is pasted unquoted"),
        (
            "\\set ON_ERROR_STOP off\nSELECT :LAST_ERROR_MESSAGE;\n",
            2,
            "`:LAST_ERROR_MESSAGE` is pasted unquoted",
        ),
        # psql finds the end of a '…' string by standard_conforming_strings, which a file can turn off
        (
            "\\echo start\nSELECT set_config('standard_' || 'conforming_strings', 'off', false);\n"
            "SELECT 'x\\' AS a, ' \\! id #';\n",
            3,
            "a backslash in a '…' string of a file run through psql",
        ),
        ("\\echo \"'\" \\! touch /tmp/proof #'\n", 1, "a backslash in the arguments of `\\echo`"),
        ("\\set AUTOCOMMIT off\n", 1, "changes how psql commits"),
        ("\\set ON_ERROR_ROLLBACK on\n", 1, "changes how psql commits"),
    ],
)
def test_effects_the_parse_cannot_see_are_refused_with_their_line(tmp_path, text, line, says):
    """The approval binds to a file's bytes and the bot parses a file before running it: a file
    that pulls in another file, runs a shell or switches database would escape both."""
    with pytest.raises(SqlFileError) as err:
        parse_file(write(tmp_path, "x.sql", text))
    assert err.value.line == line and says in err.value.message


def test_meta_commands_with_visible_effects_are_kept(tmp_path):
    parsed = parse_file(
        write(
            tmp_path,
            "ok.sql",
            """
        \\set ON_ERROR_STOP on
        \\echo checking
        \\copy (SELECT 1 FROM t) TO stdout CSV
        \\echo 'quoted: date, not run'
        \\set limit 5
        SELECT :'limit'::int, :"limit", a[1 : n], E'tab\\t', $$\\d+$$ FROM t;
    """,
        )
    )
    assert [s.sql for s in parsed.statements if s.kind == "meta"] == [
        "\\set ON_ERROR_STOP on",
        "\\echo checking",
        "\\copy (SELECT 1 FROM t) TO stdout CSV",
        "\\echo 'quoted: date, not run'",
        "\\set limit 5",
    ]


def test_a_read_only_select_after_the_final_commit_runs_inside_the_transaction(tmp_path):
    """Was refused with "a COMMIT half-way … would leave the migration half-applied", which
    does not fit: the bot runs the whole body, the SELECT included, in its one transaction."""
    parsed = parse_file(
        write(
            tmp_path,
            "m.sql",
            """
        BEGIN;
        CREATE TABLE a (i int);
        COMMIT;
        SELECT 'migration done' AS status;
    """,
        )
    )
    assert parsed.manages_transaction and not parsed.ends_in_rollback
    assert [s.sql for s in parsed.body] == ["CREATE TABLE a (i int)", "SELECT 'migration done' AS status"]


@pytest.mark.parametrize(
    "text, line, says",
    [
        (
            "BEGIN;\nCREATE TABLE a (i int);\nCOMMIT;\nINSERT INTO a VALUES (1);\n",
            3,
            "a COMMIT half-way or a ROLLBACK would leave the migration half-applied",
        ),
        ("BEGIN;\nCREATE TABLE a (i int);\nCOMMIT;\nSELECT * FROM a FOR UPDATE;\n", 3, "half-applied"),
        (
            "\\set n 1\nBEGIN;\nCREATE TABLE a (i int);\nCOMMIT;\nSELECT 'done';\n",
            5,
            "psql runs it after the migration committed",
        ),
    ],
)
def test_what_follows_the_final_commit_is_refused_with_the_real_reason(text, line, says):
    with pytest.raises(SqlFileError) as err:
        parse_text(text, name="m.sql")
    assert err.value.line == line and says in err.value.message
