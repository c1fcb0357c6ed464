"""A SQL file as PostgreSQL's own parser (pglast) sees it, before anything runs.

Pure parsing, no database: statements with their line numbers, psql meta-commands,
statements that cannot run inside a transaction, transaction control written in the file,
and the table locks each statement takes. A file that does not parse is refused here with
the parser's message and line, so a half-applied migration can never start (the stray
`RAISE NOTICE` outside a `DO` block that `psql -f` happily applies halfway).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pglast
from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType, TransactionStmtKind
from pglast.parser import ParseError

__all__ = ["Statement", "ParsedFile", "SqlFileError", "parse_file", "parse_text", "sha256_of"]


@dataclass(frozen=True)
class Statement:
    index: int  # 1-based position in the file
    sql: str  # the statement text as written
    line: int  # 1-based line where it starts in the file
    kind: str  # "sql" or "meta" (a psql backslash command)
    transactional: bool  # False for CREATE INDEX CONCURRENTLY, VACUUM, CREATE DATABASE, ALTER SYSTEM, …
    tx_control: bool  # BEGIN/START TRANSACTION/COMMIT/END/ROLLBACK written in the file
    locks: tuple[tuple[str, str], ...] = ()  # (lock level, relation), from the parse tree


@dataclass(frozen=True)
class ParsedFile:
    path: Path
    name: str
    sha256: str
    statements: tuple[Statement, ...]
    needs_psql: bool  # has psql meta-commands or :variables
    atomic: bool  # can run in one transaction (no non-transactional statement)
    manages_transaction: bool  # the file writes its own BEGIN … COMMIT around its body

    @property
    def sql_statements(self) -> tuple[Statement, ...]:
        return tuple(s for s in self.statements if s.kind == "sql")

    @property
    def ends_in_rollback(self) -> bool:
        """The file wraps itself in BEGIN … ROLLBACK: it must leave nothing behind."""
        return self.manages_transaction and is_rollback(self.sql_statements[-1].sql)

    @property
    def body(self) -> tuple[Statement, ...]:
        """The SQL statements the executor runs: the file's own BEGIN/COMMIT left out."""
        return tuple(s for s in self.sql_statements if not s.tx_control)


class SqlFileError(Exception):
    """A file that must not run: it does not parse, or its transaction control is unsafe."""

    def __init__(self, file: str, line: int, message: str):
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def parse_file(path: Path) -> ParsedFile:
    """Parse a file; raises SqlFileError (file, line, parser message) when it must not run."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SqlFileError(path.name, 0, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SqlFileError(path.name, raw[: exc.start].count(b"\n") + 1, "not valid UTF-8") from None
    return parse_text(text, name=path.name, path=path, sha256=hashlib.sha256(raw).hexdigest())


def parse_text(text: str, *, name: str = "<sql>", path: Path | None = None, sha256: str | None = None) -> ParsedFile:
    """Parse SQL text (see parse_file)."""
    sql_text, metas = _blank_meta(text)
    slices, nodes, has_vars = _parse(sql_text, name)
    statements = [_sql_statement(text, sl, node) for sl, node in zip(slices, nodes)]
    statements += [Statement(0, cmd, line, "meta", True, False) for line, cmd in metas]
    statements.sort(key=lambda s: (s.line, s.kind == "meta"))
    statements = [_renumber(s, i) for i, s in enumerate(statements, 1)]
    manages = _check_transaction_control(statements, name)
    return ParsedFile(
        path=Path(path) if path else Path(name),
        name=name,
        sha256=sha256 or hashlib.sha256(text.encode()).hexdigest(),
        statements=tuple(statements),
        needs_psql=bool(metas) or has_vars,
        atomic=all(s.transactional for s in statements),
        manages_transaction=manages,
    )


def _renumber(s: Statement, index: int) -> Statement:
    return Statement(index, s.sql, s.line, s.kind, s.transactional, s.tx_control, s.locks)


# ------------------------------------------------------------ psql meta-commands and variables

_META_LINE = re.compile(r"^[ \t]*\\")
# A query sent by a trailing meta-command instead of a semicolon: `SELECT … \gset`.
_TRAILING_META = re.compile(r"\\(?:gset|gexec|gdesc|gx|g|crosstabview|watch)\b.*$")
_VARIABLE = re.compile(r""":'[A-Za-z_][A-Za-z0-9_]*'|:"[A-Za-z_][A-Za-z0-9_]*"|(?<![:\w\]\)]):[A-Za-z_][A-Za-z0-9_]*""")


def _blank_meta(text: str) -> tuple[str, list[tuple[int, str]]]:
    """Blank psql meta-commands out of the text (same offsets, same line numbers).

    Returns the text for the parser and the (line, command) of every meta-command. A
    trailing `\\gset`/`\\g` ends the query before it, so it becomes a semicolon.
    """
    lines = text.split("\n")
    metas: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        if _META_LINE.match(line):
            metas.append((i + 1, line.strip()))
            lines[i] = " " * len(line)
            continue
        match = _TRAILING_META.search(line)
        if match and line[: match.start()].count("'") % 2 == 0 and "--" not in line[: match.start()]:
            metas.append((i + 1, match.group(0).strip()))
            lines[i] = line[: match.start()] + ";" + " " * (len(match.group(0)) - 1)
    return "\n".join(lines), metas


def _placeholders(text: str) -> str:
    """psql variables replaced, same length, by something the parser accepts (parse only)."""

    def swap(m: re.Match) -> str:
        token = m.group(0)
        if token.startswith(":'"):
            return "'" + "_" * (len(token) - 2) + "'"
        if token.startswith(':"'):
            return '"' + "_" * (len(token) - 2) + '"'
        return "_" + token[1:]

    return _VARIABLE.sub(swap, text)


def _parse(text: str, name: str):
    """(slices, nodes, has_variables). Plain SQL first; psql variables only if that fails,
    so that `a[1:n]` (an array slice) is never mistaken for a variable."""
    try:
        return _split(text) + (False,)
    except ParseError as first:
        swapped = _placeholders(text)
        if swapped != text:
            try:
                return _split(swapped) + (True,)
            except ParseError:
                pass
        raise _error(text, name, first) from None


def _split(text: str):
    slices = list(pglast.split(text, with_parser=True, only_slices=True))
    nodes = [raw.stmt for raw in pglast.parse_sql(text)]
    if len(slices) != len(nodes):  # never seen; refuse rather than misattribute lines
        raise ParseError("statement boundaries are ambiguous", None)
    return slices, nodes


def _error(text: str, name: str, exc: ParseError) -> SqlFileError:
    message, location = exc.args[0], (exc.args[1] if len(exc.args) > 1 else None)
    if location is None:  # "syntax error at end of input": the last line with text
        location = len(text.rstrip())
    return SqlFileError(name, text.count("\n", 0, location) + 1, message)


# ------------------------------------------------------------------ statement facts

def _sql_statement(text: str, sl: slice, node) -> Statement:
    return Statement(
        index=0,
        sql=text[sl],
        line=text.count("\n", 0, sl.start) + 1,
        kind="sql",
        transactional=_transactional(node),
        tx_control=_tx_control(node),
        locks=tuple(dict.fromkeys(_locks(node))),
    )


_TX_CONTROL = {
    TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START,
    TransactionStmtKind.TRANS_STMT_COMMIT, TransactionStmtKind.TRANS_STMT_ROLLBACK,
    TransactionStmtKind.TRANS_STMT_PREPARE, TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED,
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED,
}
_BEGINS = {TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START}


def _tx_control(node) -> bool:
    return isinstance(node, ast.TransactionStmt) and node.kind in _TX_CONTROL


# Statements PostgreSQL refuses inside a transaction block (PreventInTransactionBlock).
_NEVER_IN_TX = (ast.CreatedbStmt, ast.DropdbStmt, ast.AlterSystemStmt, ast.CreateTableSpaceStmt,
                ast.DropTableSpaceStmt)


def _transactional(node) -> bool:
    if isinstance(node, _NEVER_IN_TX):
        return False
    if isinstance(node, ast.VacuumStmt):
        return not node.is_vacuumcmd  # ANALYZE alone may run in a transaction, VACUUM not
    if isinstance(node, (ast.IndexStmt, ast.DropStmt)):
        return not node.concurrent
    if isinstance(node, ast.ReindexStmt):
        return not any(getattr(p, "defname", "") == "concurrently" for p in node.params or ())
    if isinstance(node, ast.ClusterStmt):
        return node.relation is not None
    if isinstance(node, ast.AlterTableStmt):
        return not any(getattr(c, "subtype", None) == AlterTableType.AT_DetachPartition
                       and getattr(c.def_, "concurrent", False) for c in node.cmds or ())
    if isinstance(node, ast.AlterDatabaseStmt):
        return not any(getattr(o, "defname", "") == "tablespace" for o in node.options or ())
    return True


# -------------------------------------------------------------------------- locks

AE, SRE, SUE, SHARE, RE = "ACCESS EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE", "ROW EXCLUSIVE"
_STRENGTH = {"ACCESS SHARE": 1, "ROW SHARE": 2, RE: 3, SUE: 4, SHARE: 5, SRE: 6, "EXCLUSIVE": 7, AE: 8}
_LOCK_MODES = {1: "ACCESS SHARE", 2: "ROW SHARE", 3: RE, 4: SUE, 5: SHARE, 6: SRE, 7: "EXCLUSIVE", 8: AE}
# ALTER TABLE sub-commands lighter than ACCESS EXCLUSIVE (PostgreSQL docs, ALTER TABLE).
_ALTER_LEVEL = {
    AlterTableType.AT_EnableTrig: SRE, AlterTableType.AT_DisableTrig: SRE,
    AlterTableType.AT_EnableTrigAll: SRE, AlterTableType.AT_DisableTrigAll: SRE,
    AlterTableType.AT_EnableTrigUser: SRE, AlterTableType.AT_DisableTrigUser: SRE,
    AlterTableType.AT_EnableAlwaysTrig: SRE, AlterTableType.AT_EnableReplicaTrig: SRE,
    AlterTableType.AT_ValidateConstraint: SUE, AlterTableType.AT_SetStatistics: SUE,
    AlterTableType.AT_ClusterOn: SUE, AlterTableType.AT_DropCluster: SUE,
    AlterTableType.AT_AttachPartition: SUE, AlterTableType.AT_SetRelOptions: SUE,
    AlterTableType.AT_ResetRelOptions: SUE,
}


def _alter_level(cmd) -> str:
    """ADD FOREIGN KEY needs only SHARE ROW EXCLUSIVE; most other sub-commands ACCESS EXCLUSIVE."""
    constraint = getattr(cmd, "def_", None)
    if cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(constraint, ast.Constraint) \
            and constraint.contype == ConstrType.CONSTR_FOREIGN:
        return SRE
    return _ALTER_LEVEL.get(cmd.subtype, AE)


def _rel(rv) -> str:
    return f"{rv.schemaname}.{rv.relname}" if getattr(rv, "schemaname", None) else rv.relname


def _strongest(levels) -> str:
    return max(levels, key=_STRENGTH.__getitem__)


def _fk_targets(elements) -> list[tuple[str, str]]:
    """A foreign key locks the table it references in SHARE ROW EXCLUSIVE mode."""
    out = []
    for el in elements or ():
        constraints = [el] if isinstance(el, ast.Constraint) else list(getattr(el, "constraints", None) or ())
        out += [(SRE, _rel(c.pktable)) for c in constraints if isinstance(c, ast.Constraint) and c.pktable]
    return out


def _locks(node) -> list[tuple[str, str]]:
    """(lock level, relation) the statement takes on existing tables, from its parse tree.

    Statements inside DO blocks and functions are dynamic and not derived."""
    if isinstance(node, ast.AlterTableStmt):
        cmds = node.cmds or ()
        level = _strongest([_alter_level(c) for c in cmds]) if cmds else AE
        fks = _fk_targets([c.def_ for c in cmds if isinstance(getattr(c, "def_", None), (ast.Constraint, ast.ColumnDef))])
        return [(level, _rel(node.relation))] + fks
    if isinstance(node, ast.IndexStmt):
        return [(SUE if node.concurrent else SHARE, _rel(node.relation))]
    if isinstance(node, (ast.CreatePolicyStmt, ast.AlterPolicyStmt)):
        return [(AE, _rel(node.table))]
    if isinstance(node, ast.CreateTrigStmt):
        return [(SRE, _rel(node.relation))]
    if isinstance(node, ast.CreateStmt):
        return _fk_targets(node.tableElts)
    if isinstance(node, ast.TruncateStmt):
        return [(AE, _rel(r)) for r in node.relations]
    if isinstance(node, ast.LockStmt):
        return [(_LOCK_MODES.get(node.mode, AE), _rel(r)) for r in node.relations]
    if isinstance(node, ast.DropStmt) and node.removeType in (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_INDEX,
                                                              ObjectType.OBJECT_VIEW, ObjectType.OBJECT_MATVIEW,
                                                              ObjectType.OBJECT_POLICY, ObjectType.OBJECT_TRIGGER):
        return [(AE, _drop_target(node.removeType, obj)) for obj in node.objects]
    if isinstance(node, ast.RenameStmt) and node.relation is not None:
        return [(AE, _rel(node.relation))]
    if isinstance(node, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)):
        return [(RE, _rel(node.relation))]
    if isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd:
        full = any(getattr(o, "defname", "") == "full" for o in node.options or ())
        return [(AE if full else SUE, _rel(r.relation)) for r in node.rels or () if r.relation]
    return []


def _drop_target(kind, obj) -> str:
    """DROP POLICY/TRIGGER name ON table: the lock is on the table (the names before the last)."""
    names = [n.sval for n in obj] if isinstance(obj, tuple) else [str(obj)]
    if kind in (ObjectType.OBJECT_POLICY, ObjectType.OBJECT_TRIGGER):
        names = names[:-1]
    return ".".join(names)


# ------------------------------------------------------------------ transaction control

def _check_transaction_control(statements: list[Statement], name: str) -> bool:
    """True when the file wraps its whole body in one BEGIN … COMMIT (or BEGIN … ROLLBACK, a
    test script that undoes itself); refuses anything else (a COMMIT half-way, a ROLLBACK in
    the middle, a BEGIN without end) so that a file can never commit halfway."""
    sql = [s for s in statements if s.kind == "sql"]
    control = [s for s in sql if s.tx_control]
    if not control:
        return False
    first, last = sql[0], sql[-1]
    wrapped = (len(control) == 2 and control[0] is first and control[1] is last
               and _is_begin(first.sql) and _is_end(last.sql))
    if wrapped:
        return True
    bad = next((s for s in control if s is not first or not _is_begin(s.sql)), control[0])
    raise SqlFileError(name, bad.line, f"transaction control `{bad.sql.strip()}` is not allowed here: a file may "
                       "only wrap its whole body in one BEGIN … COMMIT (a COMMIT half-way or a ROLLBACK would "
                       "leave the migration half-applied)")


def _is_begin(sql: str) -> bool:
    return isinstance(_node(sql), ast.TransactionStmt) and _node(sql).kind in _BEGINS


def _is_end(sql: str) -> bool:
    node = _node(sql)
    return isinstance(node, ast.TransactionStmt) and node.kind in (TransactionStmtKind.TRANS_STMT_COMMIT,
                                                                   TransactionStmtKind.TRANS_STMT_ROLLBACK)


def is_rollback(sql: str) -> bool:
    node = _node(sql)
    return isinstance(node, ast.TransactionStmt) and node.kind == TransactionStmtKind.TRANS_STMT_ROLLBACK


def _node(sql: str):
    return pglast.parse_sql(sql)[0].stmt
