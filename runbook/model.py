"""The runbook as pure data: phases, steps, checks, suites, smoke tests.

Loaded once from a TOML file (format: sql/README.md) and never touches a database. The
executor, preflight and the commands read it; nothing writes it.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from runbook import safety
from runbook.queries import read_only_problem

FAILURE_ACTIONS = ("rollback", "retry", "stop")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}


class RunbookError(ValueError):
    """The runbook file is malformed; the message names the file and the field."""


def parse_duration(value: Any, where: str = "duration") -> float:
    """Seconds from `"2s"`, `"5m"`, `"1h"`, `"500ms"` or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise RunbookError(f'{where}: {value!r} is not a duration (use e.g. "2s", "5m", "1h")')
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Input:
    """A value the bot hands to a step as a transaction-local session setting."""

    name: str  # the setting's name, e.g. "migrate.register_mongodb_url"
    env: str  # the environment variable it comes from
    secret: bool = True
    schemes: tuple[str, ...] = ()  # a URL input: the schemes it may have (empty: any)
    min_length: int = 0  # a key: the shortest value accepted


@dataclass(frozen=True)
class Step:
    id: str  # "1.1"
    name: str
    file: str  # the file that runs (for a step with options: the chosen one)
    on_failure: str = "stop"  # rollback | retry | stop
    rollback: str | None = None  # file run when on_failure == "rollback"
    inputs: tuple[str, ...] = ()  # names of [inputs] entries
    options: dict[str, str] = field(default_factory=dict)  # e.g. {"A": "..._IMPROVED.sql", "B": ...}
    chosen: str | None = None  # key of `options` that `file` is
    lock_timeout: float | None = None  # None: the runbook default
    statement_timeout: float | None = None
    migration: str | None = (
        None  # the ledger's name for this file (a version, a sqitch change); None: not tracked
    )
    revert: str | None = None  # the file that undoes this step alone (a phase of several migrations)
    verify: str | None = None  # a verify script run right after this step; failing, it stops the phase


LEDGER_KINDS = ("bot", "table", "flyway", "golang-migrate", "sqitch")


@dataclass(frozen=True)
class Ledger:
    """Where the team's record of applied migrations lives ([ledger]; engine/ledgers reads and
    writes it). `bot`: the bot's own migrate_bot.applied_files; `table`: a schema_migrations-style
    table (`table`, `column`) holding the runbook's version; `flyway`, `golang-migrate`, `sqitch`:
    that tool's own ledger, written as the tool writes it."""

    kind: str = "bot"
    table: str | None = (
        None  # table: "schema_migrations"; flyway: "flyway_schema_history"; golang-migrate: "schema_migrations"
    )
    column: str = "version"  # table kind: the version column
    plan: str | None = None  # sqitch: the plan file, relative to the runbook


@dataclass(frozen=True)
class Check:
    """A verification query: its single value is compared with `expect`."""

    name: str
    sql: str
    expect: Any
    compare: str = "eq"  # eq | ge | le


@dataclass(frozen=True)
class Suite:
    """A SQL test-suite file; pass/fail is read from its output, not only its exit code."""

    name: str
    file: str
    fail_pattern: str | None = None  # a regex: any output line matching it fails the suite
    expect_pattern: str | None = None  # a regex the output must contain


@dataclass(frozen=True)
class Smoke:
    """An HTTP request against DEPLOYMENT_URL with the status (and body) it must answer."""

    name: str
    path: str
    expect_status: tuple[int, ...]
    expect_body: str | None = None
    method: str = "GET"


@dataclass(frozen=True)
class HttpProbe:
    """A request preflight makes: GET `<url_env>/<path>` answering `expect_status` (and body)."""

    name: str
    url_env: str
    path: str = ""
    expect_status: tuple[int, ...] = (200,)
    expect_body: str | None = None
    method: str = "GET"

    def as_smoke(self) -> Smoke:
        return Smoke(self.name, self.path, self.expect_status, self.expect_body, self.method)


@dataclass(frozen=True)
class Reach:
    """A host preflight must reach: TCP to every host:port of the URL in `url_env`
    (plus a real PING for redis:// and rediss:// URLs)."""

    name: str  # the line is `network:<name>`
    url_env: str


@dataclass(frozen=True)
class PreflightChecks:
    """What pre-flight asks of the world besides the database: only what the runbook declares."""

    deployment: HttpProbe | None = None  # [preflight.deployment]: the `deployment` line
    reach: tuple[Reach, ...] = ()  # [[preflight.reach]]: one `network:<name>` line each
    sql: tuple[Check, ...] = ()  # [[preflight.sql]]: read-only preconditions, one `sql:<name>` line each
    http: tuple[HttpProbe, ...] = ()  # [[preflight.http]]: smoke tests, one `http:<name>` line each


@dataclass(frozen=True)
class SummaryLine:
    """A line of the success post's summary ("RLS: Enabled (24 tables, 48 policies)"), shown
    only when every check or gate it names passed in the run's final verification."""

    label: str
    text: str
    backed_by: tuple[str, ...]  # names of checks, smoke tests or quality gates


@dataclass(frozen=True)
class Phase:
    number: int
    name: str
    owner: str  # a roster role
    estimate: float  # seconds
    risk: str = "LOW"
    kind: str = "migration"  # migration | verification
    rollback: str | None = None  # the file that undoes this phase
    steps: tuple[Step, ...] = ()
    checks: tuple[Check, ...] = ()
    suites: tuple[Suite, ...] = ()
    smoke: tuple[Smoke, ...] = ()

    @property
    def is_verification(self) -> bool:
        return self.kind == "verification"

    @property
    def reverts(self) -> tuple[Step, ...]:
        """The steps in the order a rollback undoes them (newest first) when every step names its
        own `revert` and the phase no `rollback` file; () otherwise."""
        if self.rollback or not self.steps or not all(s.revert for s in self.steps):
            return ()
        return tuple(reversed(self.steps))

    @property
    def undo(self) -> str | None:
        """What undoes the phase, as the posts name it: its rollback file, or its steps' reverts."""
        if self.rollback:
            return self.rollback
        return ", ".join(s.revert for s in self.reverts if s.revert) or None  # reverts: each has one


@dataclass(frozen=True)
class Prerequisites:
    server_version_num: int = 150000
    applied: tuple[str, ...] = ()
    not_applied: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()


BACKUP_POLICIES = ("every", "canary")


@dataclass(frozen=True)
class FleetPolicy:
    """How this runbook goes to many databases (`[fleet]`; MIGRATE_TARGETS names them).
    `backup`: "every" — each target's pre-flight takes and proves its own backup and rehearses
    on it; "canary" — only the canary wave's targets do, the others' backups (and rehearsals,
    which run on the backup's restored copy) are skipped on purpose, and every summary says so."""

    backup: str = "every"


@dataclass(frozen=True)
class Defaults:
    lock_timeout: float = 2.0
    statement_timeout: float = 300.0
    lock_retries: int = 3
    retry_backoff: float = 2.0


@dataclass(frozen=True)
class Runbook:
    id: str
    title: str
    summary: str
    version: str
    directory: Path
    path: Path
    backup_prefix: str
    prerequisites: Prerequisites
    defaults: Defaults
    inputs: dict[str, Input]
    phases: tuple[Phase, ...]
    do_not_run: dict[str, str]  # file name -> reason
    timeline: dict[str, float]  # the report's other estimates (preflight, documentation, window)
    next_steps: tuple[str, ...] = ()
    summary_lines: tuple[SummaryLine, ...] = ()  # [[success.summary]]: the success post's first lines
    zero_downtime_lock: float = (
        1.0  # [success] zero_downtime_lock: the longest lock that is still "zero downtime"
    )
    preflight: PreflightChecks = PreflightChecks()  # declared pre-flight checks ([preflight.*])
    ledger: Ledger = field(default_factory=Ledger)
    # sha256 of the bytes this plan was built from (read once): the approval binds it, and a
    # runner holding another plan than the approved one refuses to run it.
    sha256: str = ""
    lock_safety: safety.LockSafety = field(
        default_factory=safety.LockSafety
    )  # squawk settings and thresholds
    waivers: tuple[safety.Waiver, ...] = ()  # squawk findings accepted, with reason and role
    lock_timeouts: safety.LockTimeouts = field(default_factory=safety.LockTimeouts)  # per lock level
    fleet: FleetPolicy = FleetPolicy()  # [fleet]: the backup policy when MIGRATE_TARGETS names many databases

    def phase(self, number: int) -> Phase | None:
        return next((p for p in self.phases if p.number == number), None)

    @property
    def migration_phases(self) -> tuple[Phase, ...]:
        return tuple(p for p in self.phases if not p.is_verification)

    @property
    def verification_phase(self) -> Phase | None:
        """The phase `verify` runs; None when the runbook declares none (it needs none)."""
        return next((p for p in self.phases if p.is_verification), None)

    def file_path(self, name: str) -> Path:
        return self.directory / name

    def files(self) -> list[str]:
        """Every file the runbook may execute, in order, each once (forward, rollback, suites,
        and the step options not chosen, which the approval binds to as well)."""
        names: list[str] = []
        for phase in self.phases:
            for step in phase.steps:
                names.append(step.file)
                names.extend(step.options.values())
                if step.rollback:
                    names.append(step.rollback)
                names.extend(f for f in (step.revert, step.verify) if f)
            if phase.rollback:
                names.append(phase.rollback)
            names.extend(s.file for s in phase.suites)
        return list(dict.fromkeys(names))

    def refusal_for(self, name: str) -> str | None:
        """Why a file may not run, or None: DO-NOT-RUN files and files the runbook does not name
        (by their path relative to the runbook: `deploy/x.sql` and `revert/x.sql` differ)."""
        rel = _relative(name)
        marked = {_relative(k): reason for k, reason in self.do_not_run.items()}
        if rel in marked:
            return f"{rel} is marked DO NOT RUN in runbook {self.id}: {marked[rel]}"
        if rel not in {_relative(f) for f in self.files()}:
            return f"{rel} is not part of runbook {self.id}"
        return None


def _relative(name: str) -> str:
    """A runbook file's path as compared: `./deploy//x.sql` is `deploy/x.sql`."""
    return PurePosixPath(name).as_posix()


def _refuse_outside(rb: Runbook) -> Runbook:
    """Every file a runbook names lies in its folder: an absolute path, `..` or a symlink
    leading out would run (and bind the approval to) a file nobody reviewed with the runbook."""
    home = rb.directory.resolve()
    for name in [*rb.files(), *rb.do_not_run]:
        path = PurePosixPath(name)
        if (
            path.is_absolute()
            or ".." in path.parts
            or "\\" in name
            or not (rb.directory / name).resolve().is_relative_to(home)
        ):
            raise RunbookError(
                f"{rb.path}: file {name!r} is outside the runbook's folder: name each file by its "
                f'path relative to {rb.directory} (e.g. "deploy/{path.name}")'
            )
    return rb


# ------------------------------------------------------------------ loading


def _summary_lines(success: dict[str, Any], where: str) -> tuple[SummaryLine, ...]:
    lines = []
    for i, entry in enumerate(success.get("summary", ())):
        here = f"{where} summary #{i + 1}"
        backed = entry.get("backed_by", ())
        if not backed or isinstance(backed, str):
            raise RunbookError(f"{here}: backed_by must list the checks or gates that prove the line")
        lines.append(
            SummaryLine(
                str(_req(entry, "label", here)), str(_req(entry, "text", here)), tuple(map(str, backed))
            )
        )
    return tuple(lines)


def load_runbook(path: Path | str) -> Runbook:
    """Read and validate a runbook TOML file. Raises RunbookError naming what is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise RunbookError(f"runbook {path} not found (MIGRATE_RUNBOOK)") from None
    except IsADirectoryError:
        raise RunbookError(
            f"runbook {path} is a directory: MIGRATE_RUNBOOK names its runbook.toml file"
        ) from None
    except OSError as exc:  # unreadable (permissions, a broken mount): what, not a traceback
        raise RunbookError(f"runbook {path} cannot be read: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise RunbookError(f"{path}: not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise RunbookError(f"{path}: not valid TOML: {exc}") from None
    return _refuse_outside(replace(_build(data, path), sha256=hashlib.sha256(raw).hexdigest()))


def _req(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise RunbookError(f"{where}: missing `{key}`")
    return table[key]


def _build(data: dict[str, Any], path: Path) -> Runbook:
    where = str(path)
    head = _req(data, "runbook", where)
    defaults = data.get("defaults", {})
    inputs = {
        name: _input(name, spec, f"{where} [inputs.{name}]") for name, spec in data.get("inputs", {}).items()
    }
    prereq = data.get("prerequisites", {})
    phases = tuple(
        _phase(p, inputs, f"{where} phase #{i + 1}") for i, p in enumerate(_req(data, "phases", where))
    )
    numbers = [p.number for p in phases]
    if numbers != sorted(set(numbers)):
        raise RunbookError(f"{where}: phase numbers must be unique and ascending (got {numbers})")
    runbook = Runbook(
        id=str(_req(head, "id", f"{where} [runbook]")),
        title=str(head.get("title", f"Migration {head['id']}")),
        summary=str(head.get("summary", "")),
        version=str(_req(head, "version", f"{where} [runbook]")),
        directory=path.parent,
        path=path,
        backup_prefix=str(head.get("backup_prefix", f"backup_pre_migration_{head['id']}")),
        prerequisites=Prerequisites(
            server_version_num=int(prereq.get("server_version_num", 150000)),
            applied=tuple(str(v) for v in prereq.get("applied", ())),
            not_applied=tuple(str(v) for v in prereq.get("not_applied", ())),
            extensions=tuple(prereq.get("extensions", ())),
        ),
        defaults=Defaults(
            lock_timeout=parse_duration(defaults.get("lock_timeout", "2s"), f"{where} defaults.lock_timeout"),
            statement_timeout=parse_duration(
                defaults.get("statement_timeout", "5m"), f"{where} defaults.statement_timeout"
            ),
            lock_retries=int(defaults.get("lock_retries", 3)),
            retry_backoff=parse_duration(
                defaults.get("retry_backoff", "2s"), f"{where} defaults.retry_backoff"
            ),
        ),
        inputs=inputs,
        phases=phases,
        do_not_run={d["file"]: d.get("reason", "marked DO NOT RUN") for d in data.get("do_not_run", ())},
        timeline={k: parse_duration(v, f"{where} timeline.{k}") for k, v in data.get("timeline", {}).items()},
        next_steps=tuple(data.get("success", {}).get("next_steps", ())),
        summary_lines=_summary_lines(data.get("success", {}), f"{where} [success]"),
        zero_downtime_lock=parse_duration(
            data.get("success", {}).get("zero_downtime_lock", "1s"), f"{where} success.zero_downtime_lock"
        ),
        preflight=_preflight(data.get("preflight", {}), f"{where} [preflight]"),
        ledger=_ledger(data.get("ledger", {}), f"{where} [ledger]"),
        fleet=_fleet(data.get("fleet", {}), f"{where} [fleet]"),
    )
    try:
        lock_safety, waivers, lock_timeouts = safety.load(data, where, runbook.files, parse_duration)
    except safety.SafetyError as exc:
        raise RunbookError(str(exc)) from None
    return replace(runbook, lock_safety=lock_safety, waivers=waivers, lock_timeouts=lock_timeouts)


def _ledger(raw: dict[str, Any], where: str) -> Ledger:
    kind = str(raw.get("kind", "bot"))
    if kind not in LEDGER_KINDS:
        raise RunbookError(f"{where}: kind must be one of {', '.join(LEDGER_KINDS)} (got {kind!r})")
    if kind == "sqitch" and not raw.get("plan"):
        raise RunbookError(f'{where}: kind = "sqitch" needs `plan = "sqitch.plan"`')
    table = raw.get("table")
    return Ledger(
        kind=kind,
        table=str(table) if table else None,
        column=str(raw.get("column", "version")),
        plan=raw.get("plan"),
    )


def _fleet(raw: dict[str, Any], where: str) -> FleetPolicy:
    unknown = sorted(set(raw) - {"backup"})
    if unknown:
        raise RunbookError(f"{where}: unknown key(s) {unknown} (the runbook's [fleet] has `backup`)")
    backup = raw.get("backup", "every")
    if backup not in BACKUP_POLICIES:
        raise RunbookError(
            f'{where}: backup must be "every" (each target backed up) or "canary" (only the canary wave; '
            f"the others skipped on purpose), got {backup!r}"
        )
    return FleetPolicy(backup=backup)


def _input(name: str, spec: dict[str, Any], where: str) -> Input:
    return Input(
        name=name,
        env=str(_req(spec, "env", where)),
        secret=bool(spec.get("secret", True)),
        schemes=tuple(str(s) for s in spec.get("schemes", ())),
        min_length=int(spec.get("min_length", 0)),
    )


def _preflight(raw: dict[str, Any], where: str) -> PreflightChecks:
    """[preflight.deployment], [[preflight.reach]], [[preflight.sql]], [[preflight.http]]."""
    unknown = sorted(set(raw) - {"deployment", "reach", "sql", "http"})
    if unknown:
        raise RunbookError(f"{where}: unknown check kind(s) {unknown} (use deployment, reach, sql, http)")
    deployment = raw.get("deployment")
    return PreflightChecks(
        deployment=_http_probe({"name": "deployment", **deployment}, f"{where}.deployment")
        if deployment
        else None,
        reach=tuple(
            Reach(str(_req(r, "name", f"{where}.reach")), str(_req(r, "url_env", f"{where}.reach")))
            for r in raw.get("reach", ())
        ),
        sql=tuple(_check(c, f"{where}.sql") for c in raw.get("sql", ())),
        http=tuple(_http_probe(h, f"{where}.http") for h in raw.get("http", ())),
    )


def _http_probe(raw: dict[str, Any], where: str) -> HttpProbe:
    status = raw.get("expect_status", 200)
    return HttpProbe(
        name=str(_req(raw, "name", where)),
        url_env=str(_req(raw, "url_env", where)),
        path=str(raw.get("path", "")),
        expect_status=tuple(int(x) for x in (status if isinstance(status, list) else [status])),
        expect_body=raw.get("expect_body"),
        method=str(raw.get("method", "GET")),
    )


def _check(raw: dict[str, Any], where: str) -> Check:
    """A query whose single value is compared with `expect`: exactly one read-only statement."""
    name = str(_req(raw, "name", where))
    sql = str(_req(raw, "sql", f"{where} “{name}”")).strip()
    problem = read_only_problem(sql)
    if problem:
        raise RunbookError(f"{where} “{name}”: {problem}")
    compare = str(raw.get("compare", "eq"))
    if compare not in ("eq", "ge", "le"):
        raise RunbookError(f"{where} “{name}”: compare must be eq, ge or le (got {compare!r})")
    return Check(name=name, sql=sql, expect=_req(raw, "expect", f"{where} “{name}”"), compare=compare)


def _phase(raw: dict[str, Any], inputs: dict[str, Input], where: str) -> Phase:
    number = int(_req(raw, "number", where))
    where = f"{where.rsplit(' phase', 1)[0]} phase {number}"
    kind = raw.get("kind", "migration")
    if kind not in ("migration", "verification"):
        raise RunbookError(f"{where}: kind must be migration or verification (got {kind!r})")
    steps = tuple(_step(s, inputs, f"{where} step #{i + 1}") for i, s in enumerate(raw.get("steps", ())))
    if kind == "migration" and not steps:
        raise RunbookError(f"{where}: a migration phase needs at least one [[phases.steps]]")
    if raw.get("rollback") and any(s.revert for s in steps):
        raise RunbookError(
            f"{where}: name either the phase's `rollback` file or each step's `revert`, not both"
        )
    return Phase(
        number=number,
        name=str(_req(raw, "name", where)),
        owner=str(_req(raw, "owner", where)),
        estimate=parse_duration(raw.get("estimate", "0s"), f"{where} estimate"),
        risk=str(raw.get("risk", "LOW")),
        kind=kind,
        rollback=raw.get("rollback"),
        steps=steps,
        checks=tuple(_check(c, f"{where} check") for c in raw.get("checks", ())),
        suites=tuple(
            Suite(
                name=str(s.get("name", s.get("file"))),
                file=str(_req(s, "file", where)),
                fail_pattern=s.get("fail_pattern"),
                expect_pattern=s.get("expect_pattern"),
            )
            for s in raw.get("suites", ())
        ),
        smoke=tuple(
            Smoke(
                name=str(s.get("name", s.get("path"))),
                path=str(_req(s, "path", where)),
                expect_status=tuple(
                    int(x)
                    for x in (
                        s["expect_status"]
                        if isinstance(s.get("expect_status"), list)
                        else [s.get("expect_status", 200)]
                    )
                ),
                expect_body=s.get("expect_body"),
                method=str(s.get("method", "GET")),
            )
            for s in raw.get("smoke", ())
        ),
    )


def _step(raw: dict[str, Any], inputs: dict[str, Input], where: str) -> Step:
    step_id = str(_req(raw, "id", where))
    where = f"{where.rsplit(' step', 1)[0]} step {step_id}"
    options = {str(k): str(v) for k, v in raw.get("options", {}).items()}
    chosen = raw.get("choose")
    if options:
        if chosen not in options:
            raise RunbookError(
                f"{where}: `choose` must name one of the options {sorted(options)} (got {chosen!r})"
            )
        file = options[chosen]
    else:
        file = str(_req(raw, "file", where))
    on_failure = str(raw.get("on_failure", "stop"))
    if on_failure not in FAILURE_ACTIONS:
        raise RunbookError(f"{where}: on_failure must be one of {FAILURE_ACTIONS} (got {on_failure!r})")
    if on_failure == "rollback" and not raw.get("rollback"):
        raise RunbookError(f'{where}: on_failure = "rollback" needs `rollback = "<file>"`')
    step_inputs = tuple(raw.get("inputs", ()))
    unknown = [n for n in step_inputs if n not in inputs]
    if unknown:
        raise RunbookError(f"{where}: inputs {unknown} are not declared under [inputs]")
    return Step(
        id=step_id,
        name=str(raw.get("name", file)),
        file=file,
        on_failure=on_failure,
        rollback=raw.get("rollback"),
        inputs=step_inputs,
        options=options,
        chosen=chosen,
        lock_timeout=parse_duration(raw["lock_timeout"], f"{where} lock_timeout")
        if "lock_timeout" in raw
        else None,
        statement_timeout=parse_duration(raw["statement_timeout"], f"{where} statement_timeout")
        if "statement_timeout" in raw
        else None,
        migration=str(raw["migration"]) if "migration" in raw else None,
        revert=str(raw["revert"]) if raw.get("revert") else None,
        verify=str(raw["verify"]) if raw.get("verify") else None,
    )
