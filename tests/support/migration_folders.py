"""Migration folders the test suite writes itself (no copies of public projects).

`generated(n)` yields many small up/down migrations of the kinds real folders hold: tables,
columns, indexes created and dropped, renames (table and column), sequences, functions,
views, a materialized view, triggers, empty files, and down files that are not mirror
images of their up file (IF EXISTS, CASCADE, another order) but return the schema. A
`Folder` writes them flat (`NNN_name.up.sql` / `.down.sql`) or as deploy/revert subfolders,
with a runbook of one phase per migration and nothing else: no inputs, no deployment, no
ledger table, no verification phase.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Migration:
    name: str
    up: str
    down: str


# Each template: (name, up, down); {n} is the migration's number, {p} the previous table's.
_KINDS = [
    (
        "create_table_{n}",
        "CREATE TABLE items_{n} (id bigint PRIMARY KEY, label text NOT NULL);\n",
        "DROP TABLE IF EXISTS items_{n} CASCADE;\n",
    ),
    (
        "add_column_{n}",
        "ALTER TABLE items_{p} ADD COLUMN note_{n} text DEFAULT 'none';\n",
        "ALTER TABLE items_{p} DROP COLUMN IF EXISTS note_{n};\n",
    ),
    (
        "index_{n}",
        "CREATE INDEX items_{p}_label_{n} ON items_{p} (label);\n",
        "DROP INDEX IF EXISTS items_{p}_label_{n};\n",
    ),
    (
        "drop_index_{n}",
        "CREATE INDEX tmp_{n} ON items_{p} (id, label);\nDROP INDEX tmp_{n};\n"
        "CREATE UNIQUE INDEX keep_{n} ON items_{p} (label, id);\n",
        "DROP INDEX keep_{n};\n",
    ),
    (
        "rename_column_{n}",
        "ALTER TABLE items_{p} RENAME COLUMN label TO title;\n",
        "ALTER TABLE items_{p} RENAME COLUMN title TO label;\n",
    ),
    (
        "sequence_{n}",
        "CREATE SEQUENCE counter_{n} START 100;\nALTER SEQUENCE counter_{n} INCREMENT BY 5;\n"
        "ALTER TABLE items_{p} ADD COLUMN serial_{n} bigint DEFAULT nextval('counter_{n}');\n",
        "ALTER TABLE items_{p} DROP COLUMN serial_{n};\nDROP SEQUENCE counter_{n};\n",
    ),
    (
        "function_{n}",
        "CREATE FUNCTION double_{n}(x int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT x * 2 $$;\n",
        "DROP FUNCTION IF EXISTS double_{n}(int);\n",
    ),
    (
        "view_{n}",
        "CREATE VIEW recent_{n} AS SELECT id FROM items_{p} WHERE id > 10;\n"
        "CREATE OR REPLACE VIEW recent_{n} AS SELECT id, 1 AS weight FROM items_{p} WHERE id > 10;\n",
        "DROP VIEW recent_{n};\n",
    ),
    ("empty_{n}", "-- nothing to do in this one: kept for the numbering\n", ""),
    (
        "rename_table_{n}",
        "CREATE TABLE old_{n} (id int);\nALTER TABLE old_{n} RENAME TO new_{n};\n"
        "ALTER TABLE new_{n} ADD CONSTRAINT new_{n}_pk PRIMARY KEY (id);\n",
        "DROP TABLE new_{n};\n",
    ),
    (
        "trigger_{n}",
        "CREATE FUNCTION touch_{n}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n"
        "CREATE TRIGGER touch_{n} BEFORE UPDATE ON items_{p} FOR EACH ROW EXECUTE FUNCTION touch_{n}();\n",
        "DROP FUNCTION touch_{n}() CASCADE;\n",
    ),
    (
        "matview_{n}",
        "CREATE MATERIALIZED VIEW totals_{n} AS SELECT count(*) AS n FROM items_{p};\n"
        "CREATE UNIQUE INDEX totals_{n}_n ON totals_{n} (n);\nREFRESH MATERIALIZED VIEW totals_{n};\n",
        "DROP MATERIALIZED VIEW totals_{n};\n",
    ),
]


def generated(count: int) -> list[Migration]:
    """`count` small migrations; every 12 of them start with a new table the others use."""
    out = []
    table = 1
    for i in range(count):
        n = i + 1
        name, up, down = _KINDS[i % len(_KINDS)]
        if i % len(_KINDS) == 0:
            table = n
        out.append(
            Migration(f"{n:03d}_{name.format(n=n)}", up.format(n=n, p=table), down.format(n=n, p=table))
        )
    return out


@dataclass
class Folder:
    """A migration folder on disk with its runbook.toml (one phase per migration)."""

    root: Path
    migrations: list[Migration]
    subfolders: bool = False

    def up_path(self, m: Migration) -> str:
        return f"deploy/{m.name}.sql" if self.subfolders else f"{m.name}.up.sql"

    def down_path(self, m: Migration) -> str:
        return f"revert/{m.name}.sql" if self.subfolders else f"{m.name}.down.sql"

    def write(self, runbook_extra: str = "", phase_extra: dict[int, str] | None = None) -> Path:
        """Write the files and the runbook; returns the runbook's path."""
        for m in self.migrations:
            for rel, text in ((self.up_path(m), m.up), (self.down_path(m), m.down)):
                path = self.root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        lines = ["[runbook]", 'id = "generated"', 'version = "20260102"', runbook_extra, ""]
        for number, m in enumerate(self.migrations, 1):
            lines += [
                "[[phases]]",
                f"number = {number}",
                f'name = "{m.name}"',
                'owner = "coordinator"',
                f'rollback = "{self.down_path(m)}"',
                (phase_extra or {}).get(number, ""),
                "",
                "[[phases.steps]]",
                f'id = "{number}.1"',
                f'file = "{self.up_path(m)}"',
                "",
            ]
        runbook = self.root / "runbook.toml"
        runbook.write_text("\n".join(lines))
        return runbook

    def apply_with_psql(self, url: str) -> None:
        """What a team does by hand: `psql -X -1 -f` of each up file, in order."""
        for m in self.migrations:
            subprocess.run(
                [
                    "psql",
                    "-X",
                    "-q",
                    "-1",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    url,
                    "-f",
                    str(self.root / self.up_path(m)),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
