"""A SQL file as PostgreSQL's own parser (pglast) sees it, before anything runs.

Pure parsing, no database: statements with their line numbers, psql meta-commands,
statements that cannot run inside a transaction, transaction control written in the file,
and the table locks each statement takes. A file that does not parse is refused here with
the parser's message and line, so a half-applied migration can never start (the stray
`RAISE NOTICE` outside a `DO` block that `psql -f` happily applies halfway).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import pglast
from pglast.parser import ParseError, parse_sql_json, scan

__all__ = ["Statement", "ParsedFile", "SqlFileError", "parse_file", "parse_bytes", "parse_text", "sha256_of"]

Node = tuple[str, dict[str, Any]]  # a statement's parse tree: ("CreateStmt", {...}), pglast's JSON form
LineOf = Callable[[int], int]  # character offset -> 1-based line


@dataclass(frozen=True)
class Statement:
    index: int  # 1-based position in the file
    sql: str  # the statement text as written
    line: int  # 1-based line where it starts in the file
    kind: str  # "sql" or "meta" (a psql backslash command)
    transactional: bool  # False for CREATE INDEX CONCURRENTLY, VACUUM, CREATE DATABASE, ALTER SYSTEM, …
    tx_control: bool  # BEGIN/START TRANSACTION/COMMIT/END/ROLLBACK written in the file
    locks: tuple[tuple[str, str], ...] = ()  # (lock level, relation), from the parse tree
    # (lock level, index): DROP INDEX and REINDEX INDEX also lock the index's *table* at that
    # level; which table it is only the database knows (engine.locks resolves it).
    index_table_locks: tuple[tuple[str, str], ...] = ()
    # CREATE INDEX CONCURRENTLY: (table, index name or None when PostgreSQL names it). A build
    # that fails part-way leaves an INVALID index behind; the executor needs to know where.
    concurrent_index: tuple[str, str | None] | None = None


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
        closing = [s for s in self.sql_statements if s.tx_control][-1:] if self.manages_transaction else []
        return bool(closing) and _tx_kind(_node(closing[0].sql)) == "TRANS_STMT_ROLLBACK"

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


def parse_file(path: Path, name: str | None = None) -> ParsedFile:
    """Parse a file; raises SqlFileError (file, line, parser message) when it must not run.
    `name`: what messages and the ledger call it (a runbook file: its path relative to the
    runbook, e.g. `deploy/x.sql`); by default the file's base name."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SqlFileError(name or path.name, 0, f"cannot read: {exc.strerror}") from None
    return parse_bytes(raw, path, name)


def parse_bytes(raw: bytes, path: Path, name: str | None = None) -> ParsedFile:
    """Parse bytes already read from `path` (the executor hashes and runs these same bytes)."""
    path = Path(path)
    name = name or path.name
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SqlFileError(name, raw[: exc.start].count(b"\n") + 1, "not valid UTF-8") from None
    return parse_text(text, name=name, path=path, sha256=hashlib.sha256(raw).hexdigest())


def closing_commit_offset(text: str) -> int | None:
    """Where the COMMIT (or END) closing a file's BEGIN … COMMIT starts, as a character offset
    of `text`, found by PostgreSQL's parser and scanner (never inside a string or a comment);
    None when the file's last transaction statement is not a COMMIT after its BEGIN."""
    sql_text, _metas = _blank_meta(text)
    stmts = json.loads(parse_sql_json(sql_text)).get("stmts", [])
    control = [s for s in stmts if "TransactionStmt" in s["stmt"]]
    if len(control) < 2 or _tx_kind(next(iter(control[-1]["stmt"].items()))) != "TRANS_STMT_COMMIT":
        return None
    start = control[-1].get("stmt_location", 0)
    tokens = scan(sql_text[start:])
    return start + tokens[0].start if tokens else None


def parse_text(
    text: str, *, name: str = "<sql>", path: Path | None = None, sha256: str | None = None
) -> ParsedFile:
    """Parse SQL text (see parse_file)."""
    sql_text, metas = _blank_meta(text)
    _refuse_unseen_effects(metas, name)
    slices, nodes, has_vars = _parse(sql_text, name)
    line_of = _line_index(text)
    for sl, (kind, body) in zip(slices, nodes):
        if kind == "CopyStmt" and body.get("is_program"):
            raise SqlFileError(
                name,
                line_of(sl.start),
                "COPY … PROGRAM runs a shell command on the database server: migrations run SQL only",
            )
    needs_psql = bool(metas) or has_vars or any(_copies_stdio(node) for node in nodes)
    if needs_psql:
        _refuse_psql_rereads(sql_text, name, line_of)
    statements = _in_search_path(
        [_sql_statement(text, sl, node, line_of) for sl, node in zip(slices, nodes)], nodes
    )
    statements += [Statement(0, cmd, line, "meta", True, False) for line, cmd in metas]
    statements.sort(key=lambda s: (s.line, s.kind == "meta"))
    statements = [_renumber(s, i) for i, s in enumerate(statements, 1)]
    manages = _check_transaction_control(statements, name, needs_psql)
    return ParsedFile(
        path=Path(path) if path else Path(name),
        name=name,
        sha256=sha256 or hashlib.sha256(text.encode()).hexdigest(),
        statements=tuple(statements),
        needs_psql=needs_psql,
        atomic=all(s.transactional for s in statements),
        manages_transaction=manages,
    )


def _copies_stdio(node: Node) -> bool:
    """COPY … TO STDOUT / FROM STDIN: a client-side data stream, psql's job."""
    kind, body = node
    return kind == "CopyStmt" and not body.get("filename")


def _renumber(s: Statement, index: int) -> Statement:
    return replace(s, index=index)


# ------------------------------------------------------------ psql meta-commands and variables

_META_LINE = re.compile(r"^[ \t]*\\")
# A query sent by a trailing meta-command instead of a semicolon: `SELECT … \gset`.
_TRAILING_META = re.compile(r"\\(?:gset|gexec|gdesc|gx|g|crosstabview|watch)\b.*$")
_VARIABLE = re.compile(
    r""":'[A-Za-z_][A-Za-z0-9_]*'|:"[A-Za-z_][A-Za-z0-9_]*"|(?<![:\w\]\)]):[A-Za-z_][A-Za-z0-9_]*"""
)


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


# The psql meta-commands a runbook file may use: variables, conditionals, output formatting,
# \gset, and \copy to or from a file. Everything else is refused, because its effect is one
# that neither the parse nor the approval (which binds to this file's bytes) can see.
_ALLOWED_META = frozenset(
    {
        "set",
        "unset",
        "echo",
        "qecho",
        "warn",
        "if",
        "elif",
        "else",
        "endif",
        "pset",
        "gset",
        "g",
        "gx",
        "gdesc",
        "crosstabview",
        "copy",
        "timing",
        "x",
        "t",
        "a",
        "f",
        "C",
    }
)
_INCLUDES = (
    "includes another file, which the bot cannot parse before running nor bind the approval to: "
    "put its statements in this file (or make it a step of its own)"
)
_SHELL = "runs a shell command: migrations run SQL only"
_WHY_NOT = {
    **dict.fromkeys(("i", "ir", "include", "include_relative"), _INCLUDES),
    "!": _SHELL,
    **dict.fromkeys(
        ("c", "connect"), "switches to another database than the one the runbook was approved for"
    ),
    "gexec": "runs SQL built while the file runs, which nobody saw before approving it",
    **dict.fromkeys(("o", "out", "w", "write"), "writes to a file or a shell command"),
}
_META_NAME = re.compile(r"^\\([A-Za-z_]+|!)")


def _refuse_unseen_effects(metas: list[tuple[int, str]], name: str) -> None:
    for line, command in metas:
        match = _META_NAME.match(command)
        meta = match.group(1) if match else command[:12]
        meta = "copy" if meta.lower() == "copy" else meta  # psql takes \COPY too
        rest = command[match.end() :] if match else ""
        if meta not in _ALLOWED_META:
            why = (
                _WHY_NOT.get(meta)
                or f"is not a meta-command a runbook file may use ({', '.join(sorted(_ALLOWED_META))})"
            )
            raise SqlFileError(name, line, f"`\\{meta}` {why}")
        # psql reads quotes, double quotes and backticks in arguments its own way: rather than
        # second-guess it, an argument may hold neither a backslash nor a backtick.
        if "`" in rest:
            raise SqlFileError(
                name, line, f"backticks in `\\{meta}` run a shell command: migrations run SQL only"
            )
        if "\\" in rest:
            raise SqlFileError(
                name,
                line,
                f"a backslash in the arguments of `\\{meta}` (psql could read a second "
                "meta-command there): one meta-command per line, no backslashes",
            )
        if meta in ("g", "gx") and rest.strip():
            raise SqlFileError(
                name,
                line,
                f"`\\{meta} {rest.strip()[:20]}` writes to a file or a shell command: end the query with `;`",
            )
        if meta == "set" and re.match(r"\s*(AUTOCOMMIT|ON_ERROR_ROLLBACK)\b", rest, re.IGNORECASE):
            raise SqlFileError(
                name,
                line,
                f"`\\set {rest.split()[0]}` changes how psql commits: a file the bot runs "
                "as one transaction could commit part of itself",
            )
        if meta == "copy":
            target = _copy_target(rest)
            if target is None or target.lower() not in ("stdin", "stdout", "pstdin", "pstdout"):
                raise SqlFileError(
                    name,
                    line,
                    "`\\copy` may only use stdin/stdout: a file or PROGRAM is outside the "
                    "runbook, which the approval does not cover",
                )


def _copy_target(args: str) -> str | None:
    r"""The source/destination of `\copy TABLE [(cols)] FROM|TO target …` or `\copy (query) TO …`,
    read left to right the way psql does (not the last FROM/TO, which an option could fake)."""
    rest = args.strip()
    if rest.startswith("("):  # a query: skip to its closing parenthesis, outside quotes
        depth, quote, i = 0, None, 0
        for i, ch in enumerate(rest):  # noqa: B007 - i is read after the loop
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    break
        rest = rest[i + 1 :]
    else:
        match = re.match(r'(?:"[^"]*"|[\w.$])+\s*(\([^)]*\))?', rest)
        if not match:
            return None
        rest = rest[match.end() :]
    match = re.match(r"\s*(?:from|to)\s+(\S+)", rest, re.IGNORECASE)
    return match.group(1).rstrip(";") if match else None


def _refuse_psql_rereads(sql_text: str, name: str, line_of: LineOf) -> None:
    r"""What psql reads differently from the parse, in a file run through psql (by its tokens):

    - an unquoted `:name` is pasted into the SQL and read *again* as input, so a backslash in
      its value (a `\gset` query result, psql's own LAST_ERROR_MESSAGE, a quote that shifts the
      string ends) would start a meta-command: only `:'name'` (a literal) and `:"name"` (an
      identifier) are allowed, and they are never read again;
    - psql finds where a plain '…' string ends by standard_conforming_strings, which the file
      itself could turn off: a backslash inside one could then stand outside any string. E'…'
      and $$…$$ are read the same way whatever that setting is."""
    tokens = scan(sql_text)
    for colon, after in zip(tokens, tokens[1:]):
        if (
            colon.name == "ASCII_58"
            and after.start == colon.end + 1
            and re.match(r"[A-Za-z_]", sql_text[after.start])
        ):
            variable = sql_text[after.start : after.end + 1]
            raise SqlFileError(
                name,
                line_of(colon.start),
                f"`:{variable}` is pasted unquoted and read again by psql: a backslash in its value would "
                f"run a meta-command; write :'{variable}' (a literal) or :\"{variable}\" (an identifier)"
                " (an array slice: `[1 : n]`)",
            )
    for token in tokens:
        text = sql_text[token.start : token.end + 1]
        if token.name in ("SCONST", "USCONST") and "\\" in text and not re.match(r"[Ee]'|\$", text):
            raise SqlFileError(
                name,
                line_of(token.start),
                "a backslash in a '…' string of a file run through psql: psql finds where such a "
                "string ends by standard_conforming_strings, which a file can change; write E'…' "
                "(or chr(92))",
            )


def parser_text(text: str) -> str:
    """The SQL of a psql-run file as a plain-SQL tool can read it (squawk, in pre-flight): psql
    meta-commands blanked and variables replaced by placeholders, same offsets and lines."""
    return _placeholders(_blank_meta(text)[0])


def _placeholders(text: str) -> str:
    """psql variables replaced, same length, by something the parser accepts (parse only)."""

    def swap(m: re.Match[str]) -> str:
        token: str = m.group(0)
        if token.startswith(":'"):
            return "'" + "_" * (len(token) - 2) + "'"
        if token.startswith(':"'):
            return '"' + "_" * (len(token) - 2) + '"'
        return "_" + token[1:]

    return _VARIABLE.sub(swap, text)


def _parse(text: str, name: str) -> tuple[list[slice], list[Node], bool]:
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


def _split(text: str) -> tuple[list[slice], list[Node]]:
    """Statement slices (character offsets) and their parse trees (as plain dicts: the JSON
    form is ten times faster to build than pglast's AST objects on a 5,000-statement file)."""
    slices = list(pglast.split(text, with_parser=True, only_slices=True))
    nodes = [_unwrap(raw["stmt"]) for raw in json.loads(parse_sql_json(text))["stmts"]]
    if len(slices) != len(nodes):  # never seen; refuse rather than misattribute lines
        raise ParseError("statement boundaries are ambiguous", None)
    return slices, nodes


def _error(text: str, name: str, exc: ParseError) -> SqlFileError:
    message, location = exc.args[0], (exc.args[1] if len(exc.args) > 1 else None)
    if location is None:  # "syntax error at end of input": the last line with text
        location = len(text.rstrip())
    return SqlFileError(name, text.count("\n", 0, location) + 1, message)


def _line_index(text: str) -> LineOf:
    """offset -> 1-based line, by bisecting the newline offsets (files can be long)."""
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]
    return lambda offset: bisect.bisect_left(newlines, offset) + 1


def _node(sql: str) -> Node:
    return _unwrap(json.loads(parse_sql_json(sql))["stmts"][0]["stmt"])


def _unwrap(wrapped: dict[str, Any]) -> Node:
    """{"CreateStmt": {...}} -> ("CreateStmt", {...})."""
    ((kind, body),) = wrapped.items()
    return kind, body


# ------------------------------------------------------------------ statement facts


def _sql_statement(text: str, sl: slice, node: Node, line_of: LineOf) -> Statement:
    return Statement(
        index=0,
        sql=text[sl],
        line=line_of(sl.start),
        kind="sql",
        transactional=_transactional(node),
        tx_control=_tx_kind(node) in _TX_CONTROL,
        locks=tuple(dict.fromkeys(_locks(node))),
        index_table_locks=tuple(_index_table_locks(node)),
        concurrent_index=_concurrent_index(node),
    )


class _NotSetPath(Enum):
    NOT_SET_PATH = "the statement is not a SET search_path"


_SET_PATH = _NotSetPath.NOT_SET_PATH


def _search_path_schema(node: Node) -> str | None | Literal[_NotSetPath.NOT_SET_PATH]:
    """The schema unqualified names resolve to after `SET [LOCAL] search_path TO a, b` (its first
    schema but `$user`/`pg_catalog`); None after RESET / DEFAULT; _SET_PATH when not such a SET."""
    kind, body = node
    if kind != "VariableSetStmt" or body.get("name") != "search_path":
        return _SET_PATH
    names = [_unwrap(a)[1].get("sval", {}).get("sval") for a in body.get("args", ())]
    return next((n for n in names if n and n not in ("$user", "pg_catalog", "pg_temp")), None)


def _in_search_path(statements: list[Statement], nodes: list[Node]) -> list[Statement]:
    """Qualify the relations a statement locks with the schema the file's own `SET search_path`
    chose (teams' files often `SET search_path TO app` then `ALTER TABLE items`): the lock
    taken up front and the table sizes lock safety judges are then those of app.items, not of
    a public.items that does not exist."""
    schema, out = None, []
    for stmt, node in zip(statements, nodes):
        chosen = _search_path_schema(node)
        if chosen is not _SET_PATH:
            schema = chosen
        if schema and (stmt.locks or stmt.index_table_locks):
            stmt = replace(
                stmt,
                locks=_qualified(stmt.locks, schema),
                index_table_locks=_qualified(stmt.index_table_locks, schema),
            )
        out.append(stmt)
    return out


def _qualified(pairs: Iterable[tuple[str, str]], schema: str) -> tuple[tuple[str, str], ...]:
    """(level, relation) pairs with each unqualified relation put in `schema`."""
    return tuple((level, rel if "." in rel else f"{schema}.{rel}") for level, rel in pairs)


def _concurrent_index(node: Node) -> tuple[str, str | None] | None:
    kind, body = node
    if kind != "IndexStmt" or not body.get("concurrent"):
        return None
    rv = body["relation"].get("RangeVar", body["relation"])
    name = body.get("idxname")
    # An index lives in its table's schema.
    return _rel(body["relation"]), (f"{rv['schemaname']}.{name}" if name and rv.get("schemaname") else name)


_TX_CONTROL = {
    "TRANS_STMT_BEGIN",
    "TRANS_STMT_START",
    "TRANS_STMT_COMMIT",
    "TRANS_STMT_ROLLBACK",
    "TRANS_STMT_PREPARE",
    "TRANS_STMT_COMMIT_PREPARED",
    "TRANS_STMT_ROLLBACK_PREPARED",
}
_BEGINS = {"TRANS_STMT_BEGIN", "TRANS_STMT_START"}
_ENDS = {"TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK"}


def _tx_kind(node: Node) -> str | None:
    kind, body = node
    return body.get("kind") if kind == "TransactionStmt" else None


# Statements PostgreSQL refuses inside a transaction block (PreventInTransactionBlock).
_NEVER_IN_TX = {"CreatedbStmt", "DropdbStmt", "AlterSystemStmt", "CreateTableSpaceStmt", "DropTableSpaceStmt"}


def _defnames(items: Iterable[dict[str, Any]] | None) -> set[str]:
    return {_unwrap(i)[1].get("defname", "") for i in items or ()}


def _transactional(node: Node) -> bool:
    kind, body = node
    if kind in _NEVER_IN_TX:
        return False
    if kind == "VacuumStmt":
        return not body.get("is_vacuumcmd")  # ANALYZE alone may run in a transaction, VACUUM not
    if kind in ("IndexStmt", "DropStmt"):
        return not body.get("concurrent")
    if kind == "ReindexStmt":  # REINDEX SCHEMA/SYSTEM/DATABASE commit per table
        return "concurrently" not in _defnames(body.get("params")) and body.get("kind") in (
            "REINDEX_OBJECT_INDEX",
            "REINDEX_OBJECT_TABLE",
        )
    if kind == "ClusterStmt":
        return "relation" in body
    if kind == "AlterTableStmt":
        return not any(
            _unwrap(c)[1].get("subtype") == "AT_DetachPartition"
            and _unwrap(c)[1].get("def", {}).get("PartitionCmd", {}).get("concurrent")
            for c in body.get("cmds", ())
        )
    if kind == "AlterDatabaseStmt":
        return "tablespace" not in _defnames(body.get("options"))
    return True


# -------------------------------------------------------------------------- locks

AE, SRE, SUE, SHARE, RE = (
    "ACCESS EXCLUSIVE",
    "SHARE ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "ROW EXCLUSIVE",
)
LOCK_STRENGTH = {"ACCESS SHARE": 1, "ROW SHARE": 2, RE: 3, SUE: 4, SHARE: 5, SRE: 6, "EXCLUSIVE": 7, AE: 8}
_LOCK_MODES: dict[int | None, str] = {v: k for k, v in LOCK_STRENGTH.items()}  # LOCK TABLE's numeric mode
# ALTER TABLE sub-commands lighter than ACCESS EXCLUSIVE (PostgreSQL docs, ALTER TABLE).
_ALTER_LEVEL: dict[str | None, str] = {
    **dict.fromkeys(
        [
            "AT_EnableTrig",
            "AT_DisableTrig",
            "AT_EnableTrigAll",
            "AT_DisableTrigAll",
            "AT_EnableTrigUser",
            "AT_DisableTrigUser",
            "AT_EnableAlwaysTrig",
            "AT_EnableReplicaTrig",
        ],
        SRE,
    ),
    **dict.fromkeys(
        [
            "AT_ValidateConstraint",
            "AT_SetStatistics",
            "AT_ClusterOn",
            "AT_DropCluster",
            "AT_AttachPartition",
            "AT_SetRelOptions",
            "AT_ResetRelOptions",
        ],
        SUE,
    ),
}
_DROPPED_RELATIONS = {
    "OBJECT_TABLE",
    "OBJECT_INDEX",
    "OBJECT_VIEW",
    "OBJECT_MATVIEW",
    "OBJECT_SEQUENCE",
    "OBJECT_FOREIGN_TABLE",
    "OBJECT_POLICY",
    "OBJECT_TRIGGER",
}


def _alter_level(cmd: dict[str, Any]) -> str:
    """ADD FOREIGN KEY needs only SHARE ROW EXCLUSIVE; most other sub-commands ACCESS EXCLUSIVE."""
    constraint = cmd.get("def", {}).get("Constraint", {})
    if cmd.get("subtype") == "AT_AddConstraint" and constraint.get("contype") == "CONSTR_FOREIGN":
        return SRE
    return _ALTER_LEVEL.get(cmd.get("subtype"), AE)


def _rel(rv: dict[str, Any]) -> str:
    rv = rv.get("RangeVar", rv)
    return f"{rv['schemaname']}.{rv['relname']}" if rv.get("schemaname") else rv["relname"]


def _fk_targets(elements: Iterable[dict[str, Any]] | None) -> list[tuple[str, str]]:
    """A foreign key locks the table it references in SHARE ROW EXCLUSIVE mode."""
    out: list[tuple[str, str]] = []
    for element in elements or ():
        kind, body = _unwrap(element)
        constraints = [body] if kind == "Constraint" else [_unwrap(c)[1] for c in body.get("constraints", ())]
        out += [(SRE, _rel(c["pktable"])) for c in constraints if c.get("pktable")]
    return out


def _locks(node: Node) -> list[tuple[str, str]]:
    """(lock level, relation) the statement takes on existing relations, from its parse tree
    (PostgreSQL docs: explicit locking, and each command's page). The relation may be an
    index, sequence, view or materialized view: the executor locks up front only what
    `LOCK TABLE` takes without side effects (engine.locks). Functions, types, schemas and
    extensions take no relation lock. Statements inside DO blocks and functions are dynamic
    and not derived."""
    kind, body = node
    if kind == "AlterTableStmt":
        cmds = [_unwrap(c)[1] for c in body.get("cmds", ())]
        level = max((_alter_level(c) for c in cmds), key=LOCK_STRENGTH.__getitem__, default=AE)
        return [(level, _rel(body["relation"]))] + _fk_targets([c["def"] for c in cmds if "def" in c])
    if kind == "IndexStmt":
        return [(SUE if body.get("concurrent") else SHARE, _rel(body["relation"]))]
    if kind in ("CreatePolicyStmt", "AlterPolicyStmt"):
        return [(AE, _rel(body["table"]))]
    if kind == "CreateTrigStmt":
        return [(SRE, _rel(body["relation"]))]
    if kind == "CreateStmt":
        return _fk_targets(body.get("tableElts"))
    if kind == "TruncateStmt":
        return [(AE, _rel(r)) for r in body["relations"]]
    if kind == "LockStmt":
        return [(_LOCK_MODES.get(body.get("mode"), AE), _rel(r)) for r in body["relations"]]
    if kind == "DropStmt" and body.get("removeType") in _DROPPED_RELATIONS:
        level = SUE if body.get("concurrent") else AE
        return [(level, _drop_target(body["removeType"], obj)) for obj in body.get("objects", ())]
    if (
        kind == "RenameStmt" and "relation" in body
    ):  # ALTER INDEX … RENAME: SHARE UPDATE EXCLUSIVE on the index
        return [(SUE if body.get("renameType") == "OBJECT_INDEX" else AE, _rel(body["relation"]))]
    if kind == "RefreshMatViewStmt":
        return [("EXCLUSIVE" if body.get("concurrent") else AE, _rel(body["relation"]))]
    if kind == "AlterSeqStmt":
        return [(SRE, _rel(body["sequence"]))]
    if kind == "ReindexStmt" and body.get("relation"):  # REINDEX INDEX: the table is in _index_table_locks
        concurrently = "concurrently" in _defnames(body.get("params"))
        if body.get("kind") == "REINDEX_OBJECT_TABLE":
            return [(SUE if concurrently else SHARE, _rel(body["relation"]))]
        return [(SUE if concurrently else AE, _rel(body["relation"]))]
    if kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        return [(RE, _rel(body["relation"]))]
    if kind == "VacuumStmt" and body.get("is_vacuumcmd"):
        level = AE if "full" in _defnames(body.get("options")) else SUE
        rels = [_unwrap(r)[1].get("relation") for r in body.get("rels", ())]
        return [(level, _rel(r)) for r in rels if r]
    return []


def _index_table_locks(node: Node) -> list[tuple[str, str]]:
    """DROP INDEX takes ACCESS EXCLUSIVE (CONCURRENTLY: SHARE UPDATE EXCLUSIVE) on the index's
    table as well as on the index; REINDEX INDEX a SHARE lock on the table."""
    kind, body = node
    if kind == "DropStmt" and body.get("removeType") == "OBJECT_INDEX":
        level = SUE if body.get("concurrent") else AE
        return [(level, _drop_target("OBJECT_INDEX", obj)) for obj in body.get("objects", ())]
    if kind == "ReindexStmt" and body.get("relation") and body.get("kind") == "REINDEX_OBJECT_INDEX":
        return [(SUE if "concurrently" in _defnames(body.get("params")) else SHARE, _rel(body["relation"]))]
    return []


def _drop_target(kind: str, obj: dict[str, Any]) -> str:
    """DROP POLICY/TRIGGER name ON table: the lock is on the table (the names before the last)."""
    names = [_unwrap(i)[1].get("sval", "") for i in obj.get("List", {}).get("items", ())]
    if kind in ("OBJECT_POLICY", "OBJECT_TRIGGER"):
        names = names[:-1]
    return ".".join(names)


# ------------------------------------------------------------------ transaction control


def _read_only(stmt: Statement) -> bool:
    """A plain SELECT: no INTO, no FOR UPDATE/SHARE (functions it calls are the file's code)."""
    kind, body = _node(stmt.sql)
    return kind == "SelectStmt" and not body.get("intoClause") and not body.get("lockingClause")


def _refuse_after_end(after: list[Statement], closing: Statement, name: str, needs_psql: bool) -> None:
    """Read-only SELECTs after the file's final COMMIT/ROLLBACK: see _check_transaction_control."""
    end = closing.sql.strip().rstrip(";")
    if after and needs_psql:
        raise SqlFileError(
            name,
            after[0].line,
            f"`{_short(after[0].sql)}` comes after the file's final `{end}`: psql "
            "runs it after the migration committed, so if it failed a committed migration would be "
            "reported failed; move it before the COMMIT",
        )


def _short(sql: str) -> str:
    text = " ".join(sql.split()).rstrip(";")
    return text if len(text) <= 60 else text[:59] + "…"


def _check_transaction_control(statements: list[Statement], name: str, needs_psql: bool = False) -> bool:
    """True when the file wraps its whole body in one BEGIN … COMMIT (or BEGIN … ROLLBACK, a
    test script that undoes itself); refuses anything else (a COMMIT half-way, a ROLLBACK in
    the middle, a BEGIN without end) so that a file can never commit halfway.

    Read-only SELECTs after the final COMMIT (a closing "SELECT 'done'") are allowed in a file
    the bot runs itself: it runs the whole body, them included, in its one transaction. psql
    would run them after the COMMIT, so there they are refused, with that reason."""
    sql = [s for s in statements if s.kind == "sql"]
    control = [s for s in sql if s.tx_control]
    if not control:
        return False
    first, closing = sql[0], control[-1]
    begins = _tx_kind(_node(first.sql)) in _BEGINS
    if len(control) == 2 and control[0] is first and begins and _tx_kind(_node(closing.sql)) in _ENDS:
        after = sql[sql.index(closing) + 1 :]
        if all(_read_only(s) for s in after):
            _refuse_after_end(after, closing, name, needs_psql)
            return True
    bad = next((s for s in control if s is not first or not begins), control[0])
    raise SqlFileError(
        name,
        bad.line,
        f"transaction control `{bad.sql.strip()}` is not allowed here: a file may "
        "only wrap its whole body in one BEGIN … COMMIT (a COMMIT half-way or a ROLLBACK would "
        "leave the migration half-applied)",
    )
