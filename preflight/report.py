"""The preflight report as plain data: check lines, the backup, the rehearsal, the matrix.

Every line carries its evidence (what ran, what was observed, what was required) so the
TPM decides on facts. The report round-trips through JSON (`to_dict` / `from_dict`): the
caller stores it in Redis and the approval binds to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

PASS, FAIL, PENDING = "pass", "fail", "pending"
# Not checked, on purpose, because the runbook says so (its [fleet] backup = "canary": a target
# outside the canary wave takes no backup and so has no copy to rehearse on). Never shown as ✅.
SKIPPED = "skipped"
ICONS = {PASS: "✅", FAIL: "❌", PENDING: "⏳", SKIPPED: "⏭️"}
APPROVAL = "approval"


@dataclass
class CheckLine:
    key: str  # stable id: database, server_version, deployment, network:mongodb, …
    title: str  # the GO condition, readable
    how: str  # what was run
    observed: str  # the value observed (redacted)
    required: str  # the value required
    status: str  # pass | fail | pending
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == PASS

    @property
    def icon(self) -> str:
        return ICONS.get(self.status, "❔")

    def text(self) -> str:
        """One line for a message: icon, title, observed vs required, how."""
        return f"{self.icon} {self.title}: {self.observed} (required: {self.required}; {self.how})"


@dataclass
class BackupInfo:
    path: str
    size: int
    sha256: str
    format: str
    verified: bool
    comparisons: list[CheckLine]
    restore_command: str
    dump_seconds: float
    verify_seconds: float
    schema_snapshot: str  # schema-only dump of the pre-migration db (rollback verification)
    row_counts: dict[str, int] = field(
        default_factory=dict
    )  # schema.table -> exact count at the dump's snapshot
    write_counters: dict[str, int] = field(default_factory=dict)  # n_tup_ins/upd/del totals at backup time
    problem: str | None = None  # why the backup is not usable, when it is not
    space: str = ""  # BACKUP_DIR's free space against the dump's estimated size, as checked before it

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BackupInfo:
        d = dict(d)
        d["comparisons"] = [CheckLine(**c) for c in d.get("comparisons", [])]
        return cls(**_known(cls, d))


@dataclass
class RehearsalResult:
    ok: bool
    phases: list[dict[str, Any]]  # {number, name, seconds, ok}
    verification_ok: bool
    rollback_clean: bool
    locks: list[dict[str, Any]]  # {level, relation, statement_line, file}
    longest_lock_ms: float | None
    failure: str | None  # "file:line: message"
    summary: str
    # each rehearsed phase rollback, newest first: {phase, file, status, diff, error};
    # status exact | differs (diff: schema lines it did not return) | failed | skipped | none
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    held: dict[str, str] = field(
        default_factory=dict
    )  # "file:line" -> how long that statement held its locks

    def rollback_warnings(self) -> list[dict[str, Any]]:
        """The rehearsed rollbacks that ran but did not return the schema exactly."""
        return [r for r in self.rollbacks if r.get("status") == "differs"]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RehearsalResult:
        return cls(**_known(cls, d))


# The report's Go/No-Go Decision Matrix: each GO condition and the check keys that prove it
# (a key ending in ":" stands for every line of that kind, e.g. each declared `network:<name>`).
GO_CONDITIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("DATABASE_URL accessible and PostgreSQL 15+", ("database", "server_version")),
    ("Deployment live and healthy", ("deployment",)),
    ("Private network connectivity verified", ("network:",)),
    ("Previous migrations applied", ("migrations",)),
    ("Required extensions installed", ("extensions",)),
    ("Runbook files parse, none DO NOT RUN, checksums recorded", ("runbook_files",)),
    ("Runbook inputs present, not placeholders", ("inputs",)),
    ("Declared preconditions hold (SQL, HTTP)", ("sql:", "http:")),
    ("Lock safety: no unwaived blocking finding (squawk, table sizes)", ("lock_safety",)),
    ("Full database backup created and verified", ("backup",)),
    ("Rehearsal on a copy passed (phases, verification, rollback)", ("rehearsal",)),
    ("Execution window allows enough time for troubleshooting", ("window",)),
    ("TPM approval obtained", ("approval",)),
    ("No critical production incident in progress", ("incident",)),
)
# The report's NO-GO conditions: each holds when one of its checks failed (approval: pending).
NOGO_CONDITIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Database backup failed or unverified", ("backup",)),
    ("Previous migrations not applied", ("migrations",)),
    ("Services unhealthy (database, deployment)", ("database", "server_version", "deployment")),
    ("Private network connectivity failing", ("network:",)),
    ("Declared preconditions failing (SQL, HTTP)", ("sql:", "http:")),
    ("Critical production incident ongoing", ("incident",)),
    ("Insufficient time for safe execution", ("window",)),
    (
        "Runbook not safe to run (files, inputs, rehearsal)",
        ("runbook_files", "inputs", "extensions", "rehearsal"),
    ),
    ("Dangerous locks on big tables not waived (squawk)", ("lock_safety",)),
    ("TPM approval not obtained", ("approval",)),
)

# How each NO-GO row reads when its condition is absent / present.
NOGO_READS: dict[str, tuple[str, str]] = {
    "Database backup failed or unverified": ("backup created and verified", "backup failed or unverified"),
    "Previous migrations not applied": ("previous migrations applied", "previous migrations not applied"),
    "Services unhealthy (database, deployment)": (
        "services healthy (database, deployment)",
        "services unhealthy (database, deployment)",
    ),
    "Private network connectivity failing": (
        "private network reachable",
        "private network connectivity failing",
    ),
    "Declared preconditions failing (SQL, HTTP)": (
        "declared preconditions hold",
        "declared preconditions failing",
    ),
    "Critical production incident ongoing": ("no incident", "incident declared"),
    "Insufficient time for safe execution": (
        "enough time for safe execution",
        "insufficient time for safe execution",
    ),
    "Runbook not safe to run (files, inputs, rehearsal)": (
        "runbook safe to run (files, inputs, rehearsal)",
        "runbook not safe to run (files, inputs, rehearsal)",
    ),
    "Dangerous locks on big tables not waived (squawk)": (
        "no unwaived dangerous lock (squawk)",
        "dangerous locks on big tables not waived (squawk)",
    ),
    "TPM approval not obtained": ("TPM approval obtained", "TPM approval not obtained"),
}


@dataclass
class PreflightReport:
    runbook: str
    started_at: datetime
    finished_at: datetime
    checks: list[CheckLine]
    backup: BackupInfo | None
    rehearsal: RehearsalResult | None
    checksums: dict[str, str]
    go: bool
    nogo_reasons: list[str]
    # preflight.lint.LintResult as a dict: squawk findings, waivers, high-risk locks
    lint: dict[str, Any] | None = None
    # The backup skipped on purpose (runbook [fleet] backup = "canary"): {"skipped": why,
    # "schema_snapshot": path} — the schema snapshot a rollback proof compares with is still taken.
    skipped_backup: dict[str, Any] | None = None

    @classmethod
    def build(
        cls,
        runbook: str,
        started_at: datetime,
        finished_at: datetime,
        checks: list[CheckLine],
        backup: BackupInfo | None = None,
        rehearsal: RehearsalResult | None = None,
        checksums: dict[str, str] | None = None,
        lint: dict[str, Any] | None = None,
        skipped_backup: dict[str, Any] | None = None,
    ) -> PreflightReport:
        """A report whose `go` and `nogo_reasons` are derived from its lines, never set by hand."""
        # Only the TPM's approval may be pending: it is what a GO report asks for.
        failed = [
            c
            for c in checks
            if c.status not in (PASS, SKIPPED) and not (c.status == PENDING and c.key == APPROVAL)
        ]
        return cls(
            runbook=runbook,
            started_at=started_at,
            finished_at=finished_at,
            checks=checks,
            backup=backup,
            rehearsal=rehearsal,
            checksums=dict(checksums or {}),
            go=bool(checks) and not failed,
            nogo_reasons=[f"{c.title}: {c.observed}" for c in failed],
            lint=lint,
            skipped_backup=skipped_backup,
        )

    def line(self, key: str) -> CheckLine | None:
        return next((c for c in self.checks if c.key == key), None)

    def _state(self, keys: tuple[str, ...]) -> str | None:
        lines = [
            c
            for c in self.checks
            if c.key in keys or any(k.endswith(":") and c.key.startswith(k) for k in keys)
        ]
        if not lines:
            return None
        if any(c.status == FAIL for c in lines):
            return FAIL
        if any(c.status == PENDING for c in lines):
            return PENDING
        return SKIPPED if all(c.status == SKIPPED for c in lines) else PASS

    def matrix(self) -> list[tuple[str, str]]:
        """The GO conditions (✅ holds, ❌ fails, ⏳ pending), then the NO-GO conditions
        (❌ the condition is present, ✅ absent, ⏳ pending). Rows not checked are left out."""
        rows: list[tuple[str, str]] = []
        for label, keys in GO_CONDITIONS:
            state = self._state(keys)
            if state is not None:
                rows.append((f"GO: {self._label(label, keys)}", ICONS[state]))
        for label, keys in NOGO_CONDITIONS:
            state = self._state(keys)
            if state is not None:
                # A failed check means the NO-GO condition is present: ❌; absent: ✅. The row
                # says which of the two holds ("✅ no incident", "❌ incident declared").
                absent, present = NOGO_READS.get(label, (f"{label}: no", f"{label}: yes"))
                said = {
                    PASS: absent,
                    FAIL: present,
                    SKIPPED: f"not checked, skipped on purpose ({present}?)",
                }.get(state, f"{present}? not known yet")
                rows.append((f"NO-GO check: {said}", ICONS[state]))
        return rows

    def _label(self, default: str, keys: tuple[str, ...]) -> str:
        # Single-check rows use the check's own title, which names the actual requirement
        # (e.g. "Migrations 001, 002, … 005 applied, 006 not applied").
        if len(keys) == 1 and not keys[0].endswith(":") and (line := self.line(keys[0])) is not None:
            return line.title
        return default

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started_at"] = self.started_at.isoformat()
        d["finished_at"] = self.finished_at.isoformat()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreflightReport:
        return cls(
            runbook=d["runbook"],
            started_at=datetime.fromisoformat(d["started_at"]),
            finished_at=datetime.fromisoformat(d["finished_at"]),
            checks=[CheckLine(**c) for c in d["checks"]],
            backup=BackupInfo.from_dict(d["backup"]) if d.get("backup") else None,
            rehearsal=RehearsalResult.from_dict(d["rehearsal"]) if d.get("rehearsal") else None,
            checksums=dict(d.get("checksums", {})),
            go=bool(d["go"]),
            nogo_reasons=list(d.get("nogo_reasons", [])),
            lint=d.get("lint"),
            skipped_backup=d.get("skipped_backup"),
        )


def _known(cls: type[DataclassInstance], d: dict[str, Any]) -> dict[str, Any]:
    """Only the keys `cls` declares: a stored report from a newer version still loads."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}
