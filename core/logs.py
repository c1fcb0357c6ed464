"""Logging set-up with a redacting filter: no secret reaches a log line."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from core.redact import redact

# One log line at most this long: a request or an error text can be megabytes (a body, a
# statement), and a log line is for reading. Cut after redaction, so no secret is cut in half.
MAX_LOG_CHARS = 4000


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = ()
        if record.exc_info and record.exc_info[1] is not None:
            # The formatted traceback would print the exception text unredacted.
            exc = record.exc_info[1]
            record.msg += f" [{type(exc).__name__}: {redact(str(exc), self.secrets)}]"
            record.exc_info = None
        if len(record.msg) > MAX_LOG_CHARS:
            record.msg = f"{record.msg[:MAX_LOG_CHARS]}… ({len(record.msg) - MAX_LOG_CHARS} characters cut)"
        return True


def configure(secrets: Iterable[str], level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler announces every start/stop of its scheduler at INFO: noise in a console.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
