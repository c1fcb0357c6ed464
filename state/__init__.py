"""Run state in Redis: keys, lifecycle, runs, the run lock, approvals, the audit trail, and
recovery from the PostgreSQL history when Redis lost its state."""
