"""Workflows: the long-running work the verbs and the scheduler start, each holding the run
lock and reporting through the Reporter it is handed, never through Slack.

- run.py: which phases may start now, then locked.py `start_locked` (the run lock, its
  heartbeat, no stack traces) and phases.py `PhaseRunner` (each step through the executor,
  the ledgers, the checks, the snapshot), with failures.py and verification.py;
- rollback.py, restore.py: undoing a phase with proof; restoring the verified backup;
- fleet/: a run over many databases (MIGRATE_TARGETS): its waves, the job queue, the workers;
- abort.py (the watch that lets `abort` reach running work), renew.py (the facts a mid-run
  renewal rests on), checks.py (incident, leftovers of a dead process), facts.py, gates.py,
  snapshots.py, baseline.py (representative query timings);
- what they speak and need: reporting.py (Post, Progress, Reporter, Outcome: what work
  reports and a command returns), templates.py (the report's communication plan as Posts),
  core.py (`Core`, everything a command and its work need) and schedule.py (the scheduling
  interface handed to the Core at start-up: the workflows and verbs never import the
  scheduler, which runs workflows).

May import: preflight, engine, state, runbook, core. Never commands (the verbs), scheduling
or bot (the adapters). Checked by lint-imports.
"""
