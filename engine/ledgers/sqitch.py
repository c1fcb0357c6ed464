"""sqitch's registry (schema `sqitch`, registry release 1.1: releases, projects, changes, tags,
dependencies, events), written as `sqitch deploy` / `sqitch revert` write it on PostgreSQL, with
change and tag ids computed from the plan as sqitch computes them (runbook.sqitchplan). A
deployed change: its `changes` row, its `dependencies`, the `tags` that follow it in the plan
and a `deploy` event, in the change's own transaction. A revert deletes those rows and logs a
`revert` event; a failed deploy logs a `fail` event and nothing else, as sqitch does."""

from __future__ import annotations

import psycopg
from psycopg import sql

from engine.ledgers.base import Entry, Ledger, Statement, _exists
from runbook.model import Runbook
from runbook.sqitchplan import Change, Plan, PlanError, load_plan, script_hash

REGISTRY = "sqitch"
RELEASE = 1.1
_DDL = """
SET LOCAL client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS sqitch;
CREATE TABLE IF NOT EXISTS sqitch.releases (
    version REAL PRIMARY KEY, installed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    installer_name TEXT NOT NULL, installer_email TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sqitch.projects (
    project TEXT PRIMARY KEY, uri TEXT NULL UNIQUE, created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    creator_name TEXT NOT NULL, creator_email TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sqitch.changes (
    change_id TEXT PRIMARY KEY, script_hash TEXT NULL, change TEXT NOT NULL,
    project TEXT NOT NULL REFERENCES sqitch.projects(project) ON UPDATE CASCADE,
    note TEXT NOT NULL DEFAULT '', committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name TEXT NOT NULL, committer_email TEXT NOT NULL, planned_at TIMESTAMPTZ NOT NULL,
    planner_name TEXT NOT NULL, planner_email TEXT NOT NULL, UNIQUE(project, script_hash));
CREATE TABLE IF NOT EXISTS sqitch.tags (
    tag_id TEXT PRIMARY KEY, tag TEXT NOT NULL,
    project TEXT NOT NULL REFERENCES sqitch.projects(project) ON UPDATE CASCADE,
    change_id TEXT NOT NULL REFERENCES sqitch.changes(change_id) ON UPDATE CASCADE,
    note TEXT NOT NULL DEFAULT '', committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name TEXT NOT NULL, committer_email TEXT NOT NULL, planned_at TIMESTAMPTZ NOT NULL,
    planner_name TEXT NOT NULL, planner_email TEXT NOT NULL, UNIQUE(project, tag));
CREATE TABLE IF NOT EXISTS sqitch.dependencies (
    change_id TEXT NOT NULL REFERENCES sqitch.changes(change_id) ON UPDATE CASCADE ON DELETE CASCADE,
    type TEXT NOT NULL, dependency TEXT NOT NULL,
    dependency_id TEXT NULL REFERENCES sqitch.changes(change_id) ON UPDATE CASCADE CONSTRAINT dependencies_check CHECK (
        (type = 'require' AND dependency_id IS NOT NULL) OR (type = 'conflict' AND dependency_id IS NULL)),
    PRIMARY KEY (change_id, dependency));
CREATE TABLE IF NOT EXISTS sqitch.events (
    event TEXT NOT NULL CONSTRAINT events_event_check CHECK (event IN ('deploy', 'revert', 'fail', 'merge')),
    change_id TEXT NOT NULL, change TEXT NOT NULL,
    project TEXT NOT NULL REFERENCES sqitch.projects(project) ON UPDATE CASCADE,
    note TEXT NOT NULL DEFAULT '', requires TEXT[] NOT NULL DEFAULT '{}', conflicts TEXT[] NOT NULL DEFAULT '{}',
    tags TEXT[] NOT NULL DEFAULT '{}', committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name TEXT NOT NULL, committer_email TEXT NOT NULL, planned_at TIMESTAMPTZ NOT NULL,
    planner_name TEXT NOT NULL, planner_email TEXT NOT NULL, PRIMARY KEY (change_id, committed_at))"""


def committer(actor: str) -> tuple[str, str]:
    """sqitch's user.name / user.email for what the bot deploys: the Slack user who ran it."""
    return actor, f"{actor}@migrate-bot"


class SqitchLedger(Ledger):
    kind = "sqitch"
    label = "sqitch registry"
    tables = (
        "sqitch.changes",
        "sqitch.tags",
        "sqitch.dependencies",
        "sqitch.events",
        "sqitch.projects",
        "sqitch.releases",
    )

    def __init__(self, rb: Runbook):
        super().__init__(rb)
        self._plan: Plan | None = None

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            assert self.rb.ledger.plan is not None  # runbook.model requires `plan` of a sqitch ledger
            self._plan = load_plan(self.rb.file_path(self.rb.ledger.plan))
        return self._plan

    def applied(self, conn: psycopg.Connection) -> set[str]:
        if not _exists(conn, "sqitch.changes"):
            return set()
        ids = {
            r[0]
            for r in conn.execute(
                "SELECT change_id FROM sqitch.changes WHERE project = %s", (self.plan.project,)
            )
        }
        return {c.key for c in self.plan.changes if c.id in ids}

    def problem(self, conn: psycopg.Connection) -> str | None:
        """A plan that does not read, or a step naming a change the plan does not have: the
        registry rows could not be written as sqitch would."""
        try:
            keys = {c.key for c in self.plan.changes}
        except (OSError, PlanError) as exc:
            return f"{self.rb.ledger.plan} cannot be read: {exc}"
        unknown = [s.migration for s in self.tracked() if s.migration and s.migration not in keys]
        if unknown:
            return f"the runbook names {', '.join(unknown)}, which {self.rb.ledger.plan} does not plan"
        return None

    def record(self, entry: Entry, duration_ms: int | None) -> list[Statement]:
        change = self.plan.change(entry.migration)
        name, email = committer(entry.actor)
        p = self.plan
        out: list[Statement] = [sql.SQL(s) for s in _DDL.split(";")]
        out.append(
            sql.SQL(
                "INSERT INTO sqitch.releases (version, installer_name, installer_email) SELECT {}, {}, {} "
                "WHERE NOT EXISTS (SELECT 1 FROM sqitch.releases)"
            ).format(sql.Literal(RELEASE), sql.Literal(name), sql.Literal(email))
        )
        out.append(
            sql.SQL(
                "INSERT INTO sqitch.projects (project, uri, creator_name, creator_email) VALUES ({}, {}, {}, {}) "
                "ON CONFLICT (project) DO NOTHING"
            ).format(sql.Literal(p.project), sql.Literal(p.uri), sql.Literal(name), sql.Literal(email))
        )
        out.append(
            sql.SQL(
                "INSERT INTO sqitch.changes (change_id, script_hash, change, project, note, committer_name, "
                "committer_email, planned_at, planner_name, planner_email) VALUES ({})"
            ).format(
                _values(
                    change.id,
                    script_hash(entry.file),
                    change.name,
                    p.project,
                    change.note,
                    name,
                    email,
                    change.planned_at,
                    change.planner_name,
                    change.planner_email,
                )
            )
        )
        for dep in change.requires:
            out.append(
                sql.SQL(
                    "INSERT INTO sqitch.dependencies (change_id, type, dependency, dependency_id) VALUES ({})"
                ).format(_values(change.id, "require", dep, change.resolved[dep]))
            )
        for dep in change.conflicts:
            out.append(
                sql.SQL(
                    "INSERT INTO sqitch.dependencies (change_id, type, dependency, dependency_id) VALUES ({})"
                ).format(_values(change.id, "conflict", dep, None))
            )
        for tag in change.tags:
            out.append(
                sql.SQL(
                    "INSERT INTO sqitch.tags (tag_id, tag, project, change_id, note, committer_name, "
                    "committer_email, planned_at, planner_name, planner_email) VALUES ({})"
                ).format(
                    _values(
                        tag.id,
                        f"@{tag.name}",
                        p.project,
                        change.id,
                        tag.note,
                        name,
                        email,
                        tag.planned_at,
                        tag.planner_name,
                        tag.planner_email,
                    )
                )
            )
        out.append(self._event("deploy", change, entry.actor))
        return out

    def remove(self, entry: Entry, revert: str, duration_ms: int | None) -> list[Statement]:
        change = self.plan.change(entry.migration)
        name, email = committer(entry.actor)
        cid = sql.Literal(change.id)
        return [
            sql.SQL(
                "WITH gone AS (DELETE FROM sqitch.tags WHERE change_id = {cid} RETURNING tag) "
                "INSERT INTO sqitch.events (event, change_id, change, project, note, tags, requires, conflicts, "
                "committer_name, committer_email, planned_at, planner_name, planner_email) "
                "SELECT 'revert', {cid}, {change}, {project}, {note}, ARRAY(SELECT tag FROM gone), "
                "ARRAY(SELECT dependency FROM sqitch.dependencies WHERE change_id = {cid} AND type = 'require'), "
                "ARRAY(SELECT dependency FROM sqitch.dependencies WHERE change_id = {cid} AND type = 'conflict'), "
                "{name}, {email}, {planned}, {pname}, {pemail}"
            ).format(
                cid=cid,
                change=sql.Literal(change.name),
                project=sql.Literal(self.plan.project),
                note=sql.Literal(change.note),
                name=sql.Literal(name),
                email=sql.Literal(email),
                planned=sql.Literal(change.planned_at),
                pname=sql.Literal(change.planner_name),
                pemail=sql.Literal(change.planner_email),
            ),
            sql.SQL("DELETE FROM sqitch.changes WHERE change_id = {}").format(cid),
        ]

    def mark_failed(self, conn: psycopg.Connection, entry: Entry) -> None:
        """sqitch logs a `fail` event for a change whose deploy script failed (committed on its own)."""
        with conn.transaction():
            for statement in [sql.SQL(s) for s in _DDL.split(";")]:
                conn.execute(statement)
            if conn.execute(
                "SELECT 1 FROM sqitch.projects WHERE project = %s", (self.plan.project,)
            ).fetchone():
                conn.execute(self._event("fail", self.plan.change(entry.migration), entry.actor))

    def _event(self, event: str, change: Change, actor: str) -> Statement:
        name, email = committer(actor)
        return sql.SQL(
            "INSERT INTO sqitch.events (event, change_id, change, project, note, tags, requires, conflicts, "
            "committer_name, committer_email, planned_at, planner_name, planner_email) VALUES ({})"
        ).format(
            _values(
                event,
                change.id,
                change.name,
                self.plan.project,
                change.note,
                [f"@{t.name}" for t in change.tags],
                change.requires,
                change.conflicts,
                name,
                email,
                change.planned_at,
                change.planner_name,
                change.planner_email,
            )
        )

    def failure_help(self, entry: Entry) -> str:
        return (
            f"sqitch registry: {entry.migration} not deployed (its transaction rolled back), a `fail` event "
            "logged as sqitch does; `sqitch status` agrees. Fix the deploy script, then preflight and run again"
        )


def _values(*values: object) -> sql.Composable:
    return sql.SQL(", ").join(sql.Literal(v) for v in values)
