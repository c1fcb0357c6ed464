"""A fleet of scratch databases for the surface's tests: a targets file, its URLs in an
environment of their own, a small generated runbook, and the Core of the process."""

from __future__ import annotations

from pathlib import Path

from commands import Core
from core.targets import load_fleet
from tests.support import pg
from tests.support.migration_folders import Folder, generated

# 8 databases in 3 waves: the canary, then 3, then 4.
WAVES = {"canary": 0, "db-1": 1, "db-2": 1, "db-3": 1, "db-4": 2, "db-5": 2, "db-6": 2, "db-7": 2}


def small_runbook(tmp_path: Path, count: int = 2, extra: str = "") -> Path:
    """A runbook of `count` tiny up/down migrations (one phase each) that any empty database takes."""
    return Folder(tmp_path / "fleet-rb", generated(count)).write(extra)


def targets_file(
    tmp_path: Path, urls: dict[str, str], waves: dict[str, int], parallel: int = 4, stop: int = 1
):
    """(path, env) of a targets file naming `urls` by environment variables of their own."""
    env, lines = {}, [f"[fleet]\nparallel = {parallel}\nstop_after_failures = {stop}\n"]
    for name, url in urls.items():
        var = "FLEET_" + name.upper().replace("-", "_") + "_URL"
        env[var] = url
        lines.append(f'[[targets]]\nname = "{name}"\nurl_env = "{var}"\nwave = {waves[name]}\n')
    path = tmp_path / "targets.toml"
    path.write_text("\n".join(lines))
    return path, env


def fleet_core(settings, tmp_path: Path, urls: dict[str, str], runbook: Path, waves=WAVES, **kw) -> Core:
    """The process Core of a fleet: DATABASE_URL is the canary's (the bot's own records)."""
    path, env = targets_file(tmp_path, urls, waves, **kw)
    fleet = load_fleet(path, env)
    canary = fleet.canary()[0].url
    return Core.from_settings(settings.with_(database_url=canary, runbook_path=runbook, targets=fleet))


def scratch_fleet(scratch_db, names=tuple(WAVES)) -> dict[str, str]:
    """One empty scratch database per name (dropped by the scratch_db fixture)."""
    return {name: scratch_db() for name in names}


def missing_database_url() -> str:
    """The URL of a database that does not exist on the test server."""
    return pg.url_for(pg.new_name("mt_missing"))
