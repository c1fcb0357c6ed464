"""Executor(keep_connection=True), as a run's phases use it: the next file runs on the same
backend, but as on a fresh session (DISCARD ALL): a file's SET, temporary table, prepared
statement or session advisory lock never reaches the next file; a failed or cancelled file's
session is not reused broken; close() ends it."""

from __future__ import annotations

import textwrap
import time

import psycopg

from engine.executor import Executor

SEEN = "INSERT INTO public.seen SELECT '{label}', pg_backend_pid(), current_setting('search_path'), "
SEEN += "(SELECT count(*) FROM pg_class WHERE relpersistence = 't'), "
SEEN += "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), "
SEEN += "(SELECT count(*) FROM pg_prepared_statements), current_setting('client_connection_check_interval');"


def _file(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _seen(url: str) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT * FROM public.seen").fetchall()
    return {row[0]: row[1:] for row in rows}


def test_the_next_file_runs_on_the_kept_backend_as_on_a_fresh_session(scratch_db, tmp_path):
    url = scratch_db()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA app; CREATE TABLE public.seen (label text, pid int, search_path text, "
            "temps int, advisory int, prepared int, check_interval text)"
        )
    first = _file(
        tmp_path,
        "first.sql",
        """
        SET search_path TO app, public;
        CREATE TEMP TABLE scratch (i int);
        PREPARE later AS SELECT 1;
        SELECT pg_advisory_lock(4242);
        """
        + SEEN.format(label="first"),
    )
    second = _file(tmp_path, "second.sql", SEEN.format(label="second"))
    failing = _file(tmp_path, "failing.sql", "SET search_path TO app;\nSELECT 1 / 0;\n")
    third = _file(tmp_path, "third.sql", SEEN.format(label="third"))
    executor = Executor(url, keep_connection=True)
    try:
        assert executor.run_file(first).ok
        assert executor.run_file(second).ok
        assert not executor.run_file(failing).ok
        assert executor.run_file(third).ok
    finally:
        executor.close()
    seen = _seen(url)
    first_pid, *first_state = seen["first"]
    assert first_state == ["app, public", 1, 1, 1, "1s"]
    for label in ("second", "third"):
        pid, *state = seen[label]
        assert pid == first_pid, f"{label} ran on a new backend"
        assert state == ['"$user", public', 0, 0, 0, "1s"], (label, state)
    with psycopg.connect(url, autocommit=True) as conn:  # closed: the backend is gone
        # a backend leaves pg_stat_activity a moment after its client hung up (seen under load)
        deadline = time.monotonic() + 10
        while True:
            alive = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (first_pid,)
            ).fetchone()
            if alive == (0,) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert alive == (0,)


def test_a_session_that_was_terminated_is_replaced(scratch_db, tmp_path):
    url = scratch_db()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.seen (label text, pid int, search_path text, temps int, advisory int, "
            "prepared int, check_interval text)"
        )
    executor = Executor(url, keep_connection=True)
    try:
        assert executor.run_file(_file(tmp_path, "a.sql", SEEN.format(label="a"))).ok
        pid = _seen(url)["a"][0]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # waits for it to end
        result = executor.run_file(_file(tmp_path, "b.sql", SEEN.format(label="b")))
        assert result.ok, result.error
    finally:
        executor.close()
    assert _seen(url)["b"][0] != pid
