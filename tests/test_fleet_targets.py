"""MIGRATE_TARGETS (core/targets.py): the databases of a fleet and their waves. A good file is
read into a Fleet; a bad one is refused with one line saying what to write instead, and
`python -m bot console` exits 2 with that line, never quoting a URL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ConfigError, Settings
from core.redact import redact
from core.targets import DEFAULT_PARALLEL, DEFAULT_STOP_AFTER_FAILURES, load_fleet, single_fleet

ROOT = Path(__file__).resolve().parent.parent
PW = "Fl33tS3cretPw"
ENV = {
    "EU1_URL": f"postgresql://app:{PW}@db-eu-1.internal/app",
    "EU2_URL": "postgresql://app@db-eu-2.internal/app",
    "US1_DSN": f"host=db-us-1 dbname=app password={PW}x",
}
GOOD = """
[fleet]
parallel = 2
stop_after_failures = 3

[[targets]]
name = "eu-1"
url_env = "EU1_URL"
wave = 0

[[targets]]
name = "us-1"
url_env = "US1_DSN"
wave = 2

[[targets]]
name = "eu-2"
url_env = "EU2_URL"
wave = 1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return path


def test_a_good_file_gives_the_targets_in_order_and_the_waves_canary_first(tmp_path):
    fleet = load_fleet(write(tmp_path, GOOD), ENV)
    assert fleet.names() == ["eu-1", "us-1", "eu-2"]
    assert [(n, [t.name for t in ts]) for n, ts in fleet.waves()] == [
        (0, ["eu-1"]),
        (1, ["eu-2"]),
        (2, ["us-1"]),
    ]
    assert [t.name for t in fleet.canary()] == ["eu-1"]
    assert (fleet.parallel, fleet.stop_after_failures, fleet.single) == (2, 3, False)
    assert fleet.get("eu-2").url == ENV["EU2_URL"] and fleet.get("nope") is None
    assert PW not in repr(fleet)  # the URL never shows, even in a repr


def test_defaults_parallel_4_and_stop_after_1(tmp_path):
    fleet = load_fleet(write(tmp_path, GOOD.split("[[targets]]", 1)[1].join(["[[targets]]", ""])), ENV)
    assert (
        (fleet.parallel, fleet.stop_after_failures)
        == (DEFAULT_PARALLEL, DEFAULT_STOP_AFTER_FAILURES)
        == (4, 1)
    )


def test_unset_is_the_single_database_url_as_one_canary_target():
    for path in (None, "", "  "):
        fleet = load_fleet(path, {}, database_url="postgresql://u@h/db")
        assert fleet.single and [(t.name, t.url_env, t.wave, t.url) for t in fleet.targets] == [
            ("default", "DATABASE_URL", 0, "postgresql://u@h/db")
        ]
    settings = Settings.from_env({"DATABASE_URL": "postgresql://u@h/db"})
    assert settings.targets is None and settings.fleet().names() == ["default"]
    with pytest.raises(ConfigError, match="set DATABASE_URL, or MIGRATE_TARGETS"):
        single_fleet(None)


def test_target_passwords_are_registered_secrets(tmp_path):
    env = {**ENV, "MIGRATE_TARGETS": str(write(tmp_path, GOOD)), "DATABASE_URL": "postgresql://u@h/db"}
    settings = Settings.from_env(env)
    assert settings.fleet().names() == ["eu-1", "us-1", "eu-2"]
    # US1_DSN does not end in _URL: only the targets file makes its password a secret
    assert PW + "x" in settings.secrets() and PW in settings.secrets()
    assert PW not in redact(f"{ENV['EU1_URL']} {ENV['US1_DSN']}", settings.secrets())


T = '[[targets]]\nname = "{name}"\nurl_env = "{env}"\nwave = {wave}\n'
ONE = T.format(name="eu-1", env="EU1_URL", wave=0)
BAD = [
    ("", "names no database: add one [[targets]] name ="),
    ("[fleet]\nparallel = 2\n", "names no database"),
    ("[[targets]\nname=", "not valid TOML"),
    ("target = 1\n" + ONE, "unknown table or key 'target'"),
    ("[fleet]\nparallel = 0\n" + ONE, "[fleet] parallel must be a whole number from 1 to 64 (got 0)"),
    ("[fleet]\nparallel = true\n" + ONE, "[fleet] parallel must be a whole number"),
    ("[fleet]\nparallel = 1000\n" + ONE, "from 1 to 64"),
    ("[fleet]\nstop_after_failures = -1\n" + ONE, "[fleet] stop_after_failures must be a whole number"),
    (
        "[fleet]\nparalel = 2\n" + ONE,
        "unknown key 'paralel' in [fleet]: the keys are parallel and stop_after_failures",
    ),
    (
        ONE.replace("wave = 0", "wave = 0\nurl = 'x'"),
        "unknown key 'url' in [[targets]] #1: the keys are name, url_env, wave (put the URL",
    ),
    (ONE.replace('name = "eu-1"\n', ""), "[[targets]] #1 has no name: write it as [[targets]]"),
    (ONE.replace("wave = 0\n", ""), "has no wave"),
    (T.format(name="eu 1", env="EU1_URL", wave=0), "name must be 1-63 letters, digits"),
    (T.format(name="eu-1", env="postgresql://u:p@h/db", wave=0), "url_env must name an environment variable"),
    (T.format(name="eu-1", env="EU1_URL", wave=-1), "wave must be a whole number, 0 for the canary"),
    (T.format(name="eu-1", env="EU1_URL", wave='"0"'), "wave must be a whole number"),
    (
        T.format(name="eu-1", env="NOT_SET_URL", wave=0),
        "target 'eu-1': NOT_SET_URL is not set: export NOT_SET_URL=postgresql://",
    ),
    (ONE + T.format(name="eu-1", env="EU2_URL", wave=1), "two targets are named 'eu-1'"),
    (
        ONE + T.format(name="eu-x", env="EU1_URL", wave=1),
        "targets 'eu-1' (EU1_URL) and 'eu-x' (EU1_URL) are the same URL",
    ),
    (
        T.format(name="eu-1", env="EU1_URL", wave=1),
        "no canary: the first wave is 1; give the canary database(s) wave = 0",
    ),
    (T.format(name="eu-1", env="BAD_URL", wave=0), "percent-encode it"),
]


@pytest.mark.parametrize("text,expected", BAD, ids=[e[:40] for _, e in BAD])
def test_a_bad_file_says_in_one_line_what_to_write(tmp_path, text, expected):
    env = {**ENV, "BAD_URL": "postgresql://u:pa/ss@h/db"}
    with pytest.raises(ConfigError) as caught:
        load_fleet(write(tmp_path, text), env)
    message = str(caught.value)
    assert expected in message and "\n" not in message, message
    assert message.startswith("MIGRATE_TARGETS (")
    assert PW not in message and "pa/ss" not in message


def test_a_missing_file_or_a_directory_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"no such file: create it .* or unset MIGRATE_TARGETS"):
        load_fleet(tmp_path / "nope.toml", ENV)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_fleet(tmp_path, ENV)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_fleet(tmp_path / "bin.toml", ENV)


def test_the_cli_refuses_a_bad_targets_file_in_one_line_exit_2_without_the_url(tmp_path):
    path = write(tmp_path, ONE + T.format(name="eu-x", env="EU1_URL", wave=1))
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres",
        "MIGRATE_TARGETS": str(path),
        **ENV,
    }
    p = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--user", "U0RAFAEL", "status"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert lines[0].startswith("configuration error: MIGRATE_TARGETS (") and "are the same URL" in lines[0]
    assert PW not in p.stderr + p.stdout


def test_fleet_worker_without_a_targets_file_is_refused_in_one_line():
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres"}
    p = subprocess.run(
        [sys.executable, "-m", "bot", "fleet-worker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
    assert "fleet-worker works on fleet runs: set MIGRATE_TARGETS" in lines[0]
