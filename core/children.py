"""Client tools the bot starts (psql, pg_dump, pg_restore) end when the bot ends.

A child process outlives a SIGKILLed parent: an orphaned psql would go on applying a
migration file nobody watches, an orphaned pg_restore go on filling a copy nobody will swap
in. Linux's parent-death signal ends them with the bot: `setpriv --pdeathsig TERM` (util-linux)
sets it and execs the tool, so no Python runs between fork and exec (a `preexec_fn` is not
safe in a threaded program). The signal follows the *thread* that started the child, which
is why every caller waits for its child on the thread that started it. Where setpriv is
missing the tools run as before (the README says so); the backends still end on their own,
because every tool's session sets client_connection_check_interval.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

SETPRIV = shutil.which("setpriv")
# A dead client's backend notices within this many milliseconds, even while it sleeps or
# waits on a lock without reading its socket (PostgreSQL 14+), and rolls its transaction back.
CLIENT_CHECK_MS = 1000


def dying_with_parent(args: Sequence[str]) -> list[str]:
    """`args` wrapped so that the process gets SIGTERM when the bot thread that starts it dies."""
    return [SETPRIV, "--pdeathsig", "TERM", "--", *args] if SETPRIV else list(args)
