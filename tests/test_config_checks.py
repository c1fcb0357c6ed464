"""Configuration checks exactly (core/config.py), as pure unit tests so that scripts/mutate
judges their mutants in seconds: a number that is not one, the cut of a long bad value, a
REDIS_URL without a scheme separator."""

from __future__ import annotations

import pytest

from core.config import ConfigError, Settings

BASE = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x"}


def test_a_setting_that_is_not_a_number_is_a_configuration_error():
    with pytest.raises(
        ConfigError, match=r"MIGRATE_LOCK_TTL_SECONDS must be a number greater than 0 .*'fifteen'"
    ):
        Settings.from_env({**BASE, "MIGRATE_LOCK_TTL_SECONDS": "fifteen"})


@pytest.mark.parametrize("raw", ["x" * 50, "-" + "9" * 49])
def test_a_long_bad_value_is_quoted_cut_at_40_characters(raw):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, "MIGRATE_LOCK_TTL_SECONDS": raw})
    assert f"(got {raw[:40]!r})" in str(caught.value)


def test_a_redis_url_needs_a_scheme_and_its_separator():
    for url in ("redis", "localhost:6379"):
        with pytest.raises(ConfigError, match="REDIS_URL"):
            Settings.from_env({**BASE, "REDIS_URL": url})
