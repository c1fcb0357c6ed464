"""Lock safety before GO: squawk's findings, judged with the target's table sizes and the waivers.

squawk (PyPI `squawk-cli`, its binary installed beside the bot's Python) lints every file the
run would execute: each migration step's chosen file, the rollbacks and the suites, with the
target's PostgreSQL version, and with `--assume-in-transaction` for the files the bot runs in
one transaction (the executor opens it; squawk then knows a table created earlier in the same
file is new). The rules are squawk's; what the bot adds is the production context a linter
lacks. Each finding is shown with the lock its statement takes (our parse: runbook/sqlfile.py)
and the size of the tables it touches on the target, and later with how long the rehearsal
held that lock on the copy. A finding blocks (NO-GO) unless a `[[waivers]]` entry covers it,
when squawk rates it an error or when its statement touches an existing table at or above the
runbook's threshold (`[lock_safety]` block_bytes / block_rows). A statement that takes ACCESS
EXCLUSIVE on a table above `high_risk_bytes` is listed as high risk whatever squawk says.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from core.config import ConfigError, Settings
from core.roster import Roster
from preflight.lines import Spec, line
from preflight.report import CheckLine
from runbook.model import Runbook
from runbook.safety import LockSafety, Waiver
from runbook.sqlfile import ParsedFile, SqlFileError, Statement, parse_file, parser_text

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
STATEMENT_CHARS = 160
SQUAWK_SECONDS = 60.0
SPEC = Spec(
    "lock_safety",
    "Lock safety: no unwaived blocking finding (squawk, table sizes on the target)",
    "",
    "no squawk error and no finding on an existing table above the threshold, unless waived",
)
_SIZES_SQL = """SELECT r, c.oid IS NOT NULL, c.reltuples::bigint, pg_total_relation_size(c.oid)
FROM unnest(%s::text[]) AS r LEFT JOIN pg_class c ON c.oid = to_regclass(r)"""
# DROP INDEX / REINDEX INDEX lock the index's table too: which table, only the catalog knows.
_INDEX_TABLES_SQL = """SELECT i, n.nspname || '.' || c.relname FROM unnest(%s::text[]) AS i
JOIN pg_index x ON x.indexrelid = to_regclass(i) JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace"""


class LintError(Exception):
    """squawk could not run or answered something that is not its JSON report."""


@dataclass
class Table:
    name: str
    exists: bool  # on the target now (a table this run creates does not)
    rows: int | None  # reltuples estimate; None when never analyzed
    bytes: int | None  # pg_total_relation_size

    def describe(self) -> str:
        if not self.exists:
            return f"{self.name}: not on the target (created by this run)"
        rows = f"~{self.rows:,} rows" if self.rows is not None else "rows not estimated yet"
        return f"{self.name}: {rows}, {human_size(self.bytes or 0)}"


@dataclass
class Finding:
    rule: str
    level: str  # squawk's: "error" or "warning"
    file: str
    line: int  # where squawk points, 1-based
    message: str
    statement: str  # one line, truncated
    locks: list[str]  # "SHARE on app.events" (from our parse)
    # Table as dicts: the tables the statement locks, with their sizes on the target
    tables: list[dict[str, Any]]
    blocking: bool  # blocks unless waived
    why: str  # why it blocks, or why not
    waiver: dict[str, Any] | None = None  # the waiver that covers it
    held: str = ""  # how long the rehearsal held the statement's lock on the copy
    statement_line: int = 0  # where the statement starts

    @property
    def blocks(self) -> bool:
        return self.blocking and self.waiver is None

    def text(self) -> str:
        lock = ", ".join(self.locks) or "no lock on an existing table"
        sizes = "; ".join(Table(**t).describe() for t in self.tables) or "no table"
        verdict = (
            "BLOCKS"
            if self.blocks
            else f"waived ({self.waiver['reason']} — {self.waiver['who']})"
            if self.waiver
            else "does not block"
        )
        held = f"; rehearsal: {self.held}" if self.held else ""
        return (
            f"{self.rule} ({self.level}) at {self.file}:{self.line} `{self.statement}` — lock {lock}; {sizes}; "
            f"{verdict}: {self.why}{held}"
        )


@dataclass
class LintResult:
    squawk: str  # "squawk 2.70.0": the version that ran
    pg_version: str  # as given to squawk (--pg-version)
    files: list[str]
    findings: list[Finding] = field(default_factory=list)
    # {file, line, statement, table, rows, bytes, held}
    high_risk: list[dict[str, Any]] = field(default_factory=list)
    waivers: list[dict[str, Any]] = field(default_factory=list)  # every waiver of the runbook, with `used`
    problem: str | None = None  # why lock safety could not be judged (NO-GO)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocks]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LintResult:
        d = dict(d)
        d["findings"] = [Finding(**f) for f in d.get("findings", [])]
        return cls(**d)


# ------------------------------------------------------------------ squawk


def squawk_binary() -> str | None:
    """The squawk installed with the bot (beside its Python), else one on PATH."""
    beside = Path(sys.executable).parent / "squawk"
    return str(beside) if beside.is_file() else shutil.which("squawk")


def squawk_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=SQUAWK_SECONDS)
    return out.stdout.strip() or f"squawk (version unknown: {out.stderr.strip()[:80]})"


def run_squawk(
    binary: str,
    name: str,
    text: str,
    *,
    pg_version: str,
    in_transaction: bool,
    exclude: tuple[str, ...],
    include: tuple[str, ...],
) -> list[dict[str, Any]]:
    """squawk's JSON findings for one file's text (read from stdin, reported under `name`).
    `-c /dev/null`: no .squawk.toml found on disk changes the rules behind the approval's back."""
    args = [
        binary,
        "--reporter",
        "json",
        "--pg-version",
        pg_version,
        "-c",
        "/dev/null",
        "--stdin-filepath",
        name,
    ]
    args += ["--assume-in-transaction"] if in_transaction else ["--no-assume-in-transaction"]
    if exclude:
        args.append("--exclude=" + ",".join(exclude))
    if include:
        args.append("--include=" + ",".join(include))
    try:
        out = subprocess.run(args, input=text, capture_output=True, text=True, timeout=SQUAWK_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LintError(f"squawk did not run on {name}: {exc}") from None
    try:
        found = json.loads(out.stdout or "[]")
    except json.JSONDecodeError:
        raise LintError(
            f"squawk failed on {name} (exit {out.returncode}): {out.stderr.strip()[:200]}"
        ) from None
    if not isinstance(found, list):
        raise LintError(f"squawk answered something else than a list of findings on {name}")
    return found


# ------------------------------------------------------------------ the files and the target


def lint_files(rb: Runbook) -> list[str]:
    """Every file the run would execute, in order, each once: the chosen option of each step
    (not the options left out), step and phase rollbacks, and the verification suites."""
    names: list[str] = []
    for phase in rb.phases:
        for step in phase.steps:
            names += [step.file] + ([step.rollback] if step.rollback else [])
            names += [f for f in (step.revert, step.verify) if f]
        names += ([phase.rollback] if phase.rollback else []) + [s.file for s in phase.suites]
    return list(dict.fromkeys(names))


def _parsed(rb: Runbook, names: list[str]) -> dict[str, ParsedFile]:
    """The files that parse (a file that does not is the runbook_files check's NO-GO)."""
    out = {}
    for name in names:
        try:
            out[name] = parse_file(rb.file_path(name), name)  # named as the runbook names it (deploy/x.sql)
        except SqlFileError:
            continue
    return out


def _quoted(relation: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in relation.split("."))


def target_facts(
    url: str, relations: list[str], indexes: list[str], timeout: float
) -> tuple[str, dict[str, Table], dict[str, str]]:
    """(major.minor server version, relation -> Table, index -> its table) from the target's catalog."""
    with psycopg.connect(url, autocommit=True, connect_timeout=int(max(1, timeout))) as conn:
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(timeout * 1000)}ms",))
        row = conn.execute("SELECT current_setting('server_version')").fetchone()
        assert row is not None  # current_setting() is one row
        version = row[0]
        quoted_index = {_quoted(i): i for i in indexes}
        rows = conn.execute(_INDEX_TABLES_SQL, (list(quoted_index),)).fetchall() if indexes else []
        index_tables = {quoted_index[q]: table for q, table in rows}
        relations = sorted(set(relations) | set(index_tables.values()))
        quoted = {_quoted(r): r for r in relations}
        rows = conn.execute(_SIZES_SQL, (list(quoted),)).fetchall() if relations else []
    tables = {
        quoted[q]: Table(quoted[q], bool(exists), (n if n is not None and n >= 0 else None), size)
        for q, exists, n, size in rows
    }
    match = re.match(r"(\d+)(?:\.(\d+))?", version)
    return (f"{match.group(1)}.{match.group(2) or 0}" if match else version), tables, index_tables


# ------------------------------------------------------------------ judging


def lint(settings: Settings, rb: Runbook, timeout: float = 10.0) -> LintResult:
    """squawk on every file the run would execute, each finding judged (see the module doc)."""
    names = lint_files(rb)
    binary = squawk_binary()
    if binary is None:
        return LintResult(
            "squawk not installed",
            "",
            names,
            problem="squawk is not installed: `pip install .` installs it (PyPI squawk-cli)",
        )
    parsed = _parsed(rb, names)
    relations = sorted({rel for p in parsed.values() for s in p.sql_statements for _, rel in s.locks})
    index_names = sorted(
        {i for p in parsed.values() for s in p.sql_statements for _, i in s.index_table_locks}
    )
    pg_version, tables, index_tables = target_facts(
        settings.required_database_url(), relations, index_names, timeout
    )
    result = LintResult(squawk_version(binary), pg_version, names)
    config = rb.lock_safety
    for name, file in parsed.items():
        text = file.path.read_text(encoding="utf-8")
        found = run_squawk(
            binary,
            name,
            parser_text(text) if file.needs_psql else text,
            pg_version=pg_version,
            in_transaction=file.atomic and not file.manages_transaction,
            exclude=config.exclude,
            include=config.include,
        )
        result.findings += [_judge(rb, file, raw, tables, index_tables) for raw in found]
        result.high_risk += _high_risk(rb, file, tables, index_tables)
    result.waivers = _waivers(rb, result.findings)
    result.problem = _unknown_roles(settings, rb)
    return result


def statement_locks(stmt: Statement | None, index_tables: dict[str, str]) -> list[tuple[str, str]]:
    """(level, relation) the statement takes: our parse's, plus the table of an index it drops
    or rebuilds (when that index exists on the target)."""
    if stmt is None:
        return []
    via_index = [(level, index_tables[i]) for level, i in stmt.index_table_locks if i in index_tables]
    return list(dict.fromkeys([*stmt.locks, *via_index]))


def _statement_at(file: ParsedFile, line: int) -> Statement | None:
    candidates = [s for s in file.sql_statements if s.line <= line]
    return candidates[-1] if candidates else None


def _judge(
    rb: Runbook, file: ParsedFile, raw: dict[str, Any], tables: dict[str, Table], index_tables: dict[str, str]
) -> Finding:
    line_no = int(raw.get("line", 0)) + 1  # squawk counts lines from 0
    stmt = _statement_at(file, line_no)
    sql = stmt.sql if stmt else ""
    locks = statement_locks(stmt, index_tables)
    touched = [tables[rel] for _, rel in locks if rel in tables]
    touched = list({t.name: t for t in touched}.values())
    existing = [t for t in touched if t.exists]
    error = str(raw.get("level", "")).lower() == "error"
    blocking, why = _verdict(rb.lock_safety, existing, error)
    waiver = next((w for w in rb.waivers if w.covers(raw.get("rule_name", ""), file.name, sql)), None)
    return Finding(
        rule=str(raw.get("rule_name", "?")),
        level="error" if error else "warning",
        file=file.name,
        line=line_no,
        message=str(raw.get("message", "")),
        statement=_one_line(sql),
        locks=[f"{level} on {rel}" for level, rel in locks],
        tables=[asdict(t) for t in touched],
        blocking=blocking,
        why=why,
        waiver=_waiver_dict(waiver) if waiver else None,
        statement_line=stmt.line if stmt else 0,
    )


def _verdict(config: LockSafety, existing: list[Table], error: bool) -> tuple[bool, str]:
    """(blocks unless waived, why): squawk's error, or an existing table at or above the threshold."""
    big = [t for t in existing if (t.bytes or 0) >= config.block_bytes or (t.rows or 0) >= config.block_rows]
    limit = f"{human_size(config.block_bytes)} or {config.block_rows:,} rows"
    if error:
        return True, "squawk rates it an error"
    if big:
        return True, f"{', '.join(t.name for t in big)} is at or above the threshold ({limit})"
    if existing:
        return False, f"the tables it touches are below the threshold ({limit})"
    return False, "it touches no existing table (below the threshold)"


def _high_risk(
    rb: Runbook, file: ParsedFile, tables: dict[str, Table], index_tables: dict[str, str]
) -> list[dict[str, Any]]:
    """Statements taking ACCESS EXCLUSIVE on an existing table at or above high_risk_bytes."""
    out = []
    for stmt in file.sql_statements:
        for level, rel in statement_locks(stmt, index_tables):
            t = tables.get(rel)
            if (
                level == ACCESS_EXCLUSIVE
                and t
                and t.exists
                and (t.bytes or 0) >= rb.lock_safety.high_risk_bytes
            ):
                out.append(
                    {
                        "file": file.name,
                        "line": stmt.line,
                        "statement": _one_line(stmt.sql),
                        "table": rel,
                        "rows": t.rows,
                        "bytes": t.bytes,
                        "held": "",
                    }
                )
    return out


def _waiver_dict(w: Waiver) -> dict[str, Any]:
    return {"rule": w.rule, "file": w.file, "statement": w.statement, "reason": w.reason, "who": w.who}


def _waivers(rb: Runbook, findings: list[Finding]) -> list[dict[str, Any]]:
    """Every waiver of the runbook, and whether a finding of this pre-flight needed it."""
    used = {(f.waiver["rule"], f.waiver["file"], f.waiver["statement"]) for f in findings if f.waiver}
    return [{**_waiver_dict(w), "used": (w.rule, w.file, w.statement) in used} for w in rb.waivers]


def _unknown_roles(settings: Settings, rb: Runbook) -> str | None:
    """A waiver's `who` must be a role of the roster: someone answers for it."""
    if not rb.waivers:
        return None
    try:
        roles = Roster.load(settings.roster_path).roles
    except ConfigError as exc:
        return f"waivers cannot be checked: {exc}"
    bad = sorted({w.who for w in rb.waivers if w.who not in roles})
    return f"waiver `who` {', '.join(bad)} is not a role of the roster ({', '.join(roles)})" if bad else None


# ------------------------------------------------------------------ the rehearsal's timings


def attach_timings(result: LintResult, held: dict[str, str]) -> None:
    """Put the rehearsal's lock-holding time ("file:line" -> text) next to each finding."""
    for f in result.findings:
        f.held = held.get(f"{f.file}:{f.statement_line}", "")
    for h in result.high_risk:
        h["held"] = held.get(f"{h['file']}:{h['line']}", "")


# ------------------------------------------------------------------ the report line


class Held:
    """The result of one pre-flight's lint, kept by the check that ran it for the report."""

    def __init__(self) -> None:
        self.result: LintResult | None = None

    def check(self, settings: Settings, rb: Runbook, timeout: float) -> list[CheckLine]:
        checked, self.result = check_line(settings, rb, timeout)
        return [checked]


def check_line(settings: Settings, rb: Runbook, timeout: float = 10.0) -> tuple[CheckLine, LintResult | None]:
    """The pre-flight line and the result behind it; a lint that cannot run is NO-GO."""
    spec = Spec(
        SPEC.key,
        SPEC.title,
        f"squawk on the {len(lint_files(rb))} files the run executes, table sizes from "
        f"pg_class on the target",
        SPEC.required,
    )
    try:
        result = lint(settings, rb, timeout)
    except (LintError, psycopg.Error, OSError, subprocess.SubprocessError) as exc:
        return line(spec, False, f"lock safety not judged: {exc}", settings.secrets()), None
    spec = Spec(
        spec.key,
        spec.title,
        f"{result.squawk} --pg-version {result.pg_version} on {len(result.files)} files, "
        f"table sizes from pg_class on the target",
        spec.required,
    )
    return line(spec, not result.blocking and not result.problem, summary(result), settings.secrets()), result


def summary(result: LintResult) -> str:
    parts = [result.problem] if result.problem else []
    blocking = result.blocking
    if blocking:
        parts.append(f"{len(blocking)} blocking: " + "; ".join(f.text() for f in blocking[:5]))
    waived = [f for f in result.findings if f.waiver]
    parts.append(f"{len(result.findings)} findings, {len(blocking)} blocking, {len(waived)} waived")
    if result.high_risk:
        parts.append(f"{len(result.high_risk)} high-risk ACCESS EXCLUSIVE statements")
    return "; ".join(parts)


def human_size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.0f} {unit}" if n >= 10 else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _one_line(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= STATEMENT_CHARS else text[: STATEMENT_CHARS - 1] + "…"
