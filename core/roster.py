"""Who may do what: the roster file (TOML, role name -> Slack user IDs)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from core.config import ConfigError

TPM = "tpm"
COORDINATOR = "coordinator"


@dataclass(frozen=True)
class Roster:
    roles: dict[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: Path) -> Roster:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"roster file {path} not found: set MIGRATE_ROSTER (see README, Roster)"
            ) from None
        except IsADirectoryError:
            raise ConfigError(
                f"roster file {path} is a directory: set MIGRATE_ROSTER to the roster's TOML file"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"roster file {path} is not UTF-8 text: set MIGRATE_ROSTER to the roster's TOML file"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"roster file {path} cannot be read ({exc.strerror or type(exc).__name__})"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"roster file {path} is not valid TOML: {exc}") from None
        roles = data.get("roles")
        if not isinstance(roles, dict):
            raise ConfigError(f"roster file {path} needs a [roles] table")
        parsed: dict[str, tuple[str, ...]] = {}
        for role, users in roles.items():
            if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
                raise ConfigError(f"roster file {path}: role {role!r} must be a list of Slack user IDs")
            parsed[role] = tuple(users)
        return cls(parsed)

    def members(self, role: str) -> tuple[str, ...]:
        return self.roles.get(role, ())

    def has_role(self, user: str, *roles: str) -> bool:
        return any(user in self.roles.get(r, ()) for r in roles)

    def roles_of(self, user: str) -> list[str]:
        return [r for r, users in self.roles.items() if user in users]

    def is_member(self, user: str) -> bool:
        return bool(self.roles_of(user))

    def mention(self, role: str) -> str:
        """`<@U…>` mentions of a role's members, for messages that ask them to act."""
        users = self.members(role)
        return ", ".join(f"<@{u}>" for u in users) if users else f"(no {role} in the roster)"
