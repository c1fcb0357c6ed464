"""The rule for a runbook's queries (phase checks, pre-flight SQL preconditions): exactly one
read-only statement, judged by PostgreSQL's own parser before anything runs.

They run in READ ONLY transactions as well; refusing at load time means a runbook that asks
to write from a check is rejected when it is read, with the reason, not half-way through a run.
"""

from __future__ import annotations

import json
from typing import Any

from pglast.parser import ParseError, parse_sql_json


def read_only_problem(sql: str) -> str | None:
    """Why `sql` is not exactly one read-only query (a SELECT without INTO, FOR UPDATE/SHARE
    or a data-modifying WITH), or None."""
    try:
        statements = json.loads(parse_sql_json(sql)).get("stmts", [])
    except ParseError as exc:
        return f"the query does not parse: {exc.args[0]}"
    if len(statements) != 1:
        return f"the query must be exactly one statement (found {len(statements)})"
    ((kind, body),) = statements[0]["stmt"].items()
    if kind != "SelectStmt":
        return f"the query must be a read-only SELECT (found {kind.removesuffix('Stmt').upper()})"
    return _select_problem(body)


def _select_problem(select: dict[str, Any]) -> str | None:
    if select.get("intoClause"):
        return "the query must be a read-only SELECT (SELECT … INTO creates a table)"
    if _anywhere(select, "lockingClause"):  # a subquery's FOR UPDATE too: PostgreSQL refuses it when it runs
        return "the query must be a read-only SELECT (FOR UPDATE/SHARE takes row locks)"
    for cte in (select.get("withClause") or {}).get("ctes", []):
        ((kind, body),) = cte["CommonTableExpr"]["ctequery"].items()
        if kind != "SelectStmt":
            return f"the query must be read-only (its WITH runs {kind.removesuffix('Stmt').upper()})"
        problem = _select_problem(body)
        if problem:
            return problem
    for side in ("larg", "rarg"):  # UNION / INTERSECT / EXCEPT
        if select.get(side):
            problem = _select_problem(select[side])
            if problem:
                return problem
    return None


def _anywhere(node: object, key: str) -> bool:
    """Whether a non-empty `key` occurs anywhere in the parse tree `node` (subqueries included)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get(key):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def called_functions(sql: str) -> list[tuple[str | None, str]]:
    """The functions `sql` calls by name, as (schema or None, name), lower-case, each once.
    What a view, an operator or a cast calls is not seen here."""
    try:
        tree = json.loads(parse_sql_json(sql))
    except ParseError:
        return []
    found: dict[tuple[str | None, str], None] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            call = node.get("FuncCall")
            if isinstance(call, dict):
                parts = [p.get("String", {}).get("sval", "") for p in call.get("funcname", [])]
                if parts and parts[-1]:
                    found[(parts[-2].lower() if len(parts) > 1 else None, parts[-1].lower())] = None
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return list(found)
