"""Message templates: the approval request names files that cannot run atomically."""

from __future__ import annotations

import shutil

from runbook.model import load_runbook
from sql import DEFAULT_RUNBOOK
from workflows.templates import atomicity_line


def test_the_approval_request_says_every_006_file_is_atomic():
    assert atomicity_line(load_runbook(DEFAULT_RUNBOOK)).startswith("Atomic: each of the 3 migration files")


def test_a_file_with_create_index_concurrently_is_marked_non_atomic(tmp_path):
    folder = tmp_path / "rb"
    shutil.copytree(DEFAULT_RUNBOOK.parent, folder)
    target = folder / "006_enable_rls_IMPROVED.sql"
    target.write_text(
        target.read_text() + "\nCREATE INDEX CONCURRENTLY users_email_idx2 ON platform.users (email);\n"
    )
    line = atomicity_line(load_runbook(folder / "runbook.toml"))
    assert line.startswith("⚠ Non-atomic") and "006_enable_rls_IMPROVED.sql" in line
