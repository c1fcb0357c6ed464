"""Redaction: what it masks, that its time grows linearly with its input, and that a log line is bounded."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from core.logs import MAX_LOG_CHARS, RedactingFilter
from core.redact import redact

ROOT = Path(__file__).resolve().parent.parent

# Inputs that made the old URL-password pattern backtrack quadratically (1 MB: minutes), and
# their neighbours for the other patterns. Each is built at a given size by the child script.
ADVERSARIAL = {
    "letters": '"a" * n',
    "url heads without @": '"a://u:" * (n // 6)',
    "url heads, one @ at the end": '"a://u:" * (n // 6) + "@"',
    "separators": '"://" * (n // 3)',
    "unclosed quoted passwords": '"password=\'" * (n // 10)',
    "keyword then spaces": '("password" + " " * 50) * (n // 58)',
    "at signs": '"@" * n',
    "token prefixes": '"xoxb-" * (n // 5)',
}

# CPU time of this process (not wall time: the machine is shared), best of three.
_CHILD = """
import json, sys, time
from core.redact import redact
def best(text):
    times = []
    for _ in range(3):
        start = time.process_time(); redact(text, ["a-registered-secret"]); times.append(time.process_time() - start)
    return min(times)
out = {}
for name, expr in json.loads(sys.argv[1]).items():
    small, large = (best(eval(expr, {"n": n})) for n in (1_000_000, 4_000_000))
    out[name] = large / max(small, 1e-4)
print(json.dumps(out))
"""


def test_redaction_time_grows_linearly_on_adversarial_input():
    """Four times the input (1 MB → 4 MB) costs about four times the CPU time (quadratic would
    be sixteen). Measured in a child process so that the old quadratic code (1 MB: minutes)
    fails by its time-out instead of holding this process; the bound (8) leaves room for noise."""
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(ADVERSARIAL)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    ratios = json.loads(child.stdout)
    assert set(ratios) == set(ADVERSARIAL)
    slow = {name: round(r, 1) for name, r in ratios.items() if r >= 8}
    assert not slow, f"time(4 MB) / time(1 MB) should be about 4: {slow}"


def test_url_passwords_are_masked_up_to_the_last_at_of_the_word():
    assert redact("postgresql://user:pw@host/db") == "postgresql://user:***@host/db"
    # unencoded '/', '#', '?' and '@' inside a password: the whole password goes
    assert redact("redis://default:pa/ss#w?rd@host:6379 next") == "redis://default:***@host:6379 next"
    assert redact("redis://:p@ss@h:1") == "redis://:***@h:1"
    assert redact("mongodb://a:b@h1,h2/db?x=1") == "mongodb://a:***@h1,h2/db?x=1"
    assert redact("two: a://u:one@h b://v:two@k") == "two: a://u:***@h b://v:***@k"
    assert redact("http://host:8080/path no credentials") == "http://host:8080/path no credentials"


def test_keyword_passwords_and_tokens_are_masked():
    assert redact("host=h password=abc&x=1") == "host=h password=***&x=1"
    assert redact("password='a b c' user=x") == "password=*** user=x"
    assert redact("password='never closed") == "password=***"
    assert redact("token xoxb-123-abc here") == "token xoxb-*** here"
    assert redact("the key is k3y-Zq9vT2hS8wX4.", ["k3y-Zq9vT2hS8wX4"]) == "the key is ***."


def test_a_log_line_is_cut_to_a_bounded_length_after_redaction():
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "body: %s", ("x" * 1_000_000 + " postgresql://u:pw@h",), None
    )
    assert RedactingFilter(["s3cret-value"]).filter(record)
    line = record.getMessage()
    assert len(line) < MAX_LOG_CHARS + 100 and "characters cut" in line


def test_a_secret_at_the_cut_is_masked_before_the_cut():
    secret = "S3cretAtTheCutEdge"
    text = "y" * (MAX_LOG_CHARS - 5) + secret
    record = logging.LogRecord("t", logging.INFO, __file__, 1, text, (), None)
    RedactingFilter([secret]).filter(record)
    assert secret[:5] not in record.getMessage()


def test_libpq_sslpassword_and_an_escaped_quote_in_a_password_are_masked():
    """Fail without the fix: `sslpassword` (libpq's passphrase of the client key) was shown as
    written, and `password='a\\' b'` showed what followed the escaped quote."""
    assert redact("host=h sslpassword=S3cretSSL dbname=d") == "host=h sslpassword=*** dbname=d"
    assert redact("postgresql://u@h/d?sslpassword=S3cretSSL") == "postgresql://u@h/d?sslpassword=***"
    assert redact(r"host=h password='S3cr\' etPart' dbname=d") == "host=h password=*** dbname=d"


def test_the_passwords_libpq_reads_from_a_connection_string_are_registered_secrets():
    from core.urls import url_secrets

    assert set(url_secrets([r"host=h password='S3cr\' etPart' sslpassword=KeyPass9 dbname=d"])) == {
        "S3cr' etPart",
        "KeyPass9",
    }
    assert "QueryPw77" in url_secrets(["postgresql://u@h/d?password=QueryPw77"])
    assert url_secrets(["redis://:RedisPw1@h:6379/0", "not a dsn"]) == ("RedisPw1",)
