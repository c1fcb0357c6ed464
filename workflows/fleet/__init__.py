"""A fleet run (issue 18): one runbook, many databases, wave by wave, shared by every bot process.

- `waves.py`: starting a fleet run and moving it on (state.fleet's wave rule) by sending one job
  per target to the queue; the sweep that repairs what a dead process left half-sent.
- `target.py`: one target's job: claim it, resume or start its own run with the single-database
  machinery (its phases, ledger, lock and rollback are its own), record the outcome.
- `queue.py`: the job queue, dramatiq's Redis broker on the bot's Redis (README: why dramatiq).
- `worker.py`: the worker threads `serve` and `python -m bot fleet-worker` run.
- `context.py`: what those share in one process: settings, the fleet store, a Core per target,
  and the single-database machinery (handed in by bot/fleet.py: no verb is imported here).

May import what workflows may (preflight, engine, state, runbook, core).
"""
