"""The report's whole path through the console, against a real 005 database and real Redis.

preflight → approve by a non-TPM refused → approve by the TPM → phase 2 before phase 1
refused → phase 1 by someone else refused → phase 1 by its owner → phase 2 by its owner →
verification → success template → rollback of phase 2, then phase 1 → schema back to 005.
"""

from __future__ import annotations

from commands import Core
from tests.conftest import PLANTED
from tests.support import pg
from tests.support.flow import COORDINATOR, LIU, SERGEI, TPM, Console
from tests.support.sqlfacts import appendix_b_facts


def test_whole_path_of_the_report(ready):
    console = Console(Core.from_settings(ready))
    schema_005 = pg.schema_dump(ready.database_url)

    code, out = console(COORDINATOR, "preflight")
    assert code == 0, out
    assert "pre-flight: GO" in out and "Requesting go/no-go decision" in out

    code, out = console(LIU, "approve")
    assert code == 2 and "only the TPM can `approve`" in out and "<@U0DYLAN>" in out

    code, out = console(TPM, "approve")
    assert code == 0 and "GO now" in out

    code, out = console(SERGEI, "run phase 2")
    assert code == 2 and "phase 1" in out

    code, out = console(SERGEI, "run phase 1")
    assert code == 2 and "only the database engineer or coordinator" in out

    code, out = console(LIU, "run phase 1")
    assert code == 0, out
    assert "Phase 1 started" in out and "Phase 1 complete" in out

    code, out = console(COORDINATOR, "preflight")
    assert code == 2 and "phase 1 applied" in out  # a new run would lose track of phase 1

    code, out = console(SERGEI, "run phase 2")
    assert code == 0, out
    assert "Phase 2 complete" in out

    code, out = console(COORDINATOR, "verify")
    assert code == 0, out
    assert "Migration 006 SUCCESSFUL ✅" in out
    for gate in (
        "All migrations executed",
        "All tests passed",
        "Zero errors",
        "Application healthy",
        "Database healthy",
        "Backup safe",
    ):
        assert gate in out

    facts = appendix_b_facts(ready.database_url)
    assert facts["rls_tables"] == 24 and facts["permissive_policies"] == 48
    assert "006" in [
        r for r in pg.scalar(ready.database_url, "SELECT array_agg(version::text) FROM schema_migrations")
    ]

    code, out = console(COORDINATOR, "report")
    assert code == 0 and "## Sign-Off" in out and "<@U0DYLAN>" in out

    code, out = console(LIU, "rollback phase 1")
    assert code == 2 and "phase 2" in out

    code, out = console(SERGEI, "rollback phase 2")
    assert code == 0, out
    assert "Rollback of phase 2 complete" in out and "Data loss: none" in out

    code, out = console(LIU, "rollback phase 1")
    assert code == 0, out
    assert "Schema equals the pre-migration schema" in out

    assert pg.schema_dump(ready.database_url) == schema_005
    everything = console.everything()
    for secret in (PLANTED["key"], "S3cretMongoPw42", "S3cretRedisPw42", PLANTED["bot_token"]):
        assert secret not in everything
