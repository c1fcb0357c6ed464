"""The schema as the catalogs hold it, in one query: a cheaper stand-in for `pg_dump --schema-only`.

After each phase the bot keeps the schema for the rollback proof ("after `rollback phase n` the
schema equals the one after phase n-1"). pg_dump costs a process, a connection and dozens of
queries (80–400 ms); this is one query on a connection the caller already holds (a few ms). It is
only used where it is as strong: the text it returns differs between two states of a database
exactly when their `pg_dump --schema-only` (normalized as `engine.schema.normalize` does: without
comments and OWNER TO lines) differs. tests/test_catalog_snapshot.py checks that claim on every
pair of many generated schema states.

What it covers, with what pg_dump prints of each (and nothing pg_dump leaves out): schemas;
tables (kind, persistence, access method, tablespace, options, TOAST options, row security,
replica identity, typed-table type, partition key and bound, parents); columns in their order
(type, NOT NULL, default or generation expression, identity, collation and storage where they
differ from the type's, compression, statistics target, options, whether declared locally);
constraints (pg_get_constraintdef); valid indexes (pg_get_indexdef, CLUSTER ON, replica
identity, attached partition, statistics targets); views and materialized views
(pg_get_viewdef); sequences (every parameter, OWNED BY); functions and procedures
(pg_get_functiondef); triggers (pg_get_triggerdef, enabled state); policies; rules; enum,
composite and domain types; extensions (pg_dump prints no version); extended statistics;
comments on all of them; privileges (relative to the owner, as pg_dump prints GRANT/REVOKE
against the default; owners themselves are left out as `normalize` leaves out OWNER TO).
Excluded like pg_dump's flags in engine/schema.py: the bot's schema, `sqitch`, the ledger tables.

Anything else pg_dump would print (aggregates, operators, range and base types, collations,
casts, foreign tables and servers, publications, event triggers, default privileges, security
labels, text search objects…) is listed by name only, on an `UNCOVERED` line: such a snapshot
is `complete=False`, and the caller takes pg_dump instead (`engine.schema.snapshot`).
"""

from __future__ import annotations

import psycopg

HEADER = (
    "-- migrate-bot catalog snapshot v1 (engine/catalog_snapshot.py): one line per catalog fact; "
    "it differs exactly when pg_dump --schema-only does"
)
UNCOVERED = "UNCOVERED"
# How the lines that name an object start (a definition's further lines hold " | ").
OBJECT_LINES = (
    "schema ",
    "relation ",
    "column ",
    "constraint ",
    "index ",
    "function ",
    "trigger ",
    "policy ",
    "rule ",
    "type ",
    "extension ",
    "statistics ",
    UNCOVERED,
)

# Kept in step with engine.schema.BOT_SCHEMA / LEDGER_EXCLUDES (a test compares them).
EXCLUDED_SCHEMAS = ("migrate_bot", "sqitch")
EXCLUDED_TABLES = ("flyway_schema_history", "schema_migrations")
_TABLE_KINDS = "('r','S','v','m','f','p')"  # what pg_dump's --exclude-table patterns match


# attoptions as pg_dump prints them: this server's build keeps an internal `pg_attver=` entry
# there that its pg_dump leaves out.
_ATTOPTIONS = "(SELECT string_agg(o, ',') FROM unnest(a.attoptions) o WHERE o NOT LIKE 'pg\\_attver=%')"


def _ns(alias: str) -> str:
    """A namespace (joined as `alias`) whose objects pg_dump prints."""
    skip = ", ".join(f"'{s}'" for s in ("pg_catalog", "information_schema", *EXCLUDED_SCHEMAS))
    return (
        f"{alias}.nspname NOT IN ({skip}) AND {alias}.nspname NOT LIKE 'pg\\_toast%' "
        f"AND {alias}.nspname NOT LIKE 'pg\\_temp%'"
    )


def _not_member(catalog: str, oid: str) -> str:
    """Not an extension's member object (pg_dump prints only the CREATE EXTENSION)."""
    return (
        f"NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass "
        f"AND e.objid = {oid} AND e.deptype = 'e')"
    )


def _kept_rel(alias: str) -> str:
    """Relation `alias` (a pg_class row joined with namespace n_`alias`) is dumped."""
    return (
        f"{_ns('n_' + alias)} AND {_not_member('pg_class', alias + '.oid')} "
        f"AND NOT ({alias}.relkind IN {_TABLE_KINDS} AND {alias}.relname IN "
        f"({', '.join(repr(t) for t in EXCLUDED_TABLES)}))"
    )


def _acl(acl: str, owner: str, kind: str) -> str:
    """Privileges as pg_dump prints them: what was granted (+) or revoked (-) against the
    default for the owner; a grant by the owner without the owner's name (pg_dump names another
    grantor only), sorted. An ACL equal to the default reads as no ACL at all."""
    item = (
        "CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END"
        " || '=' || g.privilege_type || CASE WHEN g.is_grantable THEN '*' ELSE '' END || '/' || "
        f"CASE WHEN g.grantor = {owner} THEN 'OWNER' ELSE quote_ident(pg_get_userbyid(g.grantor)) END"
    )
    now = f"aclexplode(coalesce({acl}, acldefault('{kind}', {owner}))) g"
    default = f"aclexplode(acldefault('{kind}', {owner})) g"
    return (
        "(SELECT coalesce(string_agg(x, ',' ORDER BY x), '') FROM ("
        f"(SELECT '+' || {item} FROM {now} EXCEPT SELECT '+' || {item} FROM {default}) UNION ALL "
        f"(SELECT '-' || {item} FROM {default} EXCEPT SELECT '-' || {item} FROM {now})) acl(x))"
    )


def _comment(oid: str, catalog: str, sub: str = "0") -> str:
    return (
        f"(SELECT d.description FROM pg_description d WHERE d.objoid = {oid} "
        f"AND d.classoid = '{catalog}'::regclass AND d.objsubid = {sub})"
    )


def _field(name: str, expr: str) -> str:
    """` name=value` when value is not null, else nothing."""
    return f"coalesce(' {name}=' || ({expr})::text, '')"


# Each part: rows (object, line). The object keeps a multi-line definition's lines together.
_PARTS = [
    # schemas
    f"""SELECT 'schema ' || quote_ident(n.nspname), 'schema ' || quote_ident(n.nspname)
        || ' acl=' || {_acl("n.nspacl", "n.nspowner", "n")} || {_field("comment", _comment("n.oid", "pg_namespace"))}
        FROM pg_namespace n WHERE {_ns("n")} AND {_not_member("pg_namespace", "n.oid")}""",
    # relations: tables, partitioned tables, views, materialized views, sequences, composite types
    f"""SELECT 'relation ' || c.oid::regclass::text, 'relation ' || c.oid::regclass::text
        || ' kind=' || c.relkind::text || ' persistence=' || c.relpersistence::text
        || {_field("am", "(SELECT amname FROM pg_am WHERE oid = c.relam)")}
        || {_field("tablespace", "(SELECT spcname FROM pg_tablespace WHERE oid = c.reltablespace)")}
        || {_field("options", "array_to_string(array_remove(array_remove(c.reloptions, 'check_option=local'), 'check_option=cascaded'), ',')")}
        || {_field("check_option", "(SELECT o FROM unnest(c.reloptions) o WHERE o IN ('check_option=local', 'check_option=cascaded'))")}
        || {_field("toast", "(SELECT array_to_string(t.reloptions, ',') FROM pg_class t WHERE t.oid = c.reltoastrelid)")}
        || ' rls=' || c.relrowsecurity || ' force=' || c.relforcerowsecurity || ' replident=' || c.relreplident::text
        || {_field("of", "CASE WHEN c.reloftype <> 0 THEN c.reloftype::regtype::text END")}
        || {_field("partkey", "CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END")}
        || {_field("bound", "pg_get_expr(c.relpartbound, c.oid)")}
        || {_field("inherits", "(SELECT string_agg(i.inhparent::regclass::text, ',' ORDER BY i.inhseqno) FROM pg_inherits i WHERE i.inhrelid = c.oid)")}
        || CASE WHEN c.relkind = 'c' THEN '' ELSE ' acl=' || {_acl("c.relacl", "c.relowner", "r")} END
        || {_field("comment", _comment("c.oid", "pg_class"))}
        FROM pg_class c JOIN pg_namespace n_c ON n_c.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'c') AND {_kept_rel("c")}""",
    f"""SELECT 'relation ' || c.oid::regclass::text, 'relation ' || c.oid::regclass::text
        || ' sequence as ' || format_type(s.seqtypid, NULL) || ' persistence=' || c.relpersistence::text
        || ' start=' || s.seqstart || ' increment=' || s.seqincrement || ' min=' || s.seqmin
        || ' max=' || s.seqmax || ' cache=' || s.seqcache || ' cycle=' || s.seqcycle
        || {_field("owned_by", "(SELECT d.deptype::text || ':' || d.refobjid::regclass::text || '.' || quote_ident(a.attname) FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n_t ON n_t.oid = t.relnamespace WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND " + _kept_rel("t") + ")")}
        || {_field("tablespace", "(SELECT spcname FROM pg_tablespace WHERE oid = c.reltablespace)")}
        || ' acl=' || {_acl("c.relacl", "c.relowner", "s")}
        || {_field("comment", _comment("c.oid", "pg_class"))}
        FROM pg_class c JOIN pg_namespace n_c ON n_c.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid
        WHERE c.relkind = 'S' AND {_kept_rel("c")}""",
    # view and materialized view definitions, line by line
    f"""SELECT 'relation ' || c.oid::regclass::text, 'relation ' || c.oid::regclass::text || ' | ' || l.line
        FROM pg_class c JOIN pg_namespace n_c ON n_c.oid = c.relnamespace,
             LATERAL regexp_split_to_table(pg_get_viewdef(c.oid), E'\\n') WITH ORDINALITY AS l(line, k)
        WHERE c.relkind IN ('v', 'm') AND {_kept_rel("c")}""",
    # columns, numbered in their order (a dropped column leaves no gap)
    f"""SELECT 'relation ' || c.oid::regclass::text, 'column ' || c.oid::regclass::text || ' #'
        || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) || ' ' || quote_ident(a.attname)
        || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
        || {_field("default", "pg_get_expr(ad.adbin, ad.adrelid)")}
        || {_field("identity", "nullif(a.attidentity::text, '')")} || {_field("generated", "nullif(a.attgenerated::text, '')")}
        || {_field("collate", "CASE WHEN a.attcollation <> t.typcollation THEN (SELECT quote_ident(nspname) || '.' || quote_ident(collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END")}
        || {_field("storage", "CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END")}
        || {_field("compression", "nullif(a.attcompression::text, '')")}
        || {_field("statistics", "nullif(a.attstattarget, -1)")}
        || {_field("options", _ATTOPTIONS)}
        || {_field("fdwoptions", "array_to_string(a.attfdwoptions, ',')")}
        || ' local=' || a.attislocal
        || CASE WHEN c.relkind = 'c' THEN '' ELSE ' acl=' || {_acl("a.attacl", "c.relowner", "c")} END
        || {_field("comment", _comment("c.oid", "pg_class", "a.attnum"))}
        FROM pg_class c JOIN pg_namespace n_c ON n_c.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'c') AND {_kept_rel("c")}""",
    # constraints of tables and domains (a constraint trigger is listed with the triggers)
    f"""SELECT 'relation ' || coalesce(c.oid::regclass::text, co.contypid::regtype::text),
        'constraint ' || coalesce(c.oid::regclass::text, 'domain ' || co.contypid::regtype::text) || ' '
        || quote_ident(co.conname) || ': ' || pg_get_constraintdef(co.oid) || ' local=' || co.conislocal
        || CASE WHEN co.conparentid <> 0 THEN ' from-parent' ELSE '' END
        || {_field("comment", _comment("co.oid", "pg_constraint"))}
        FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
        LEFT JOIN pg_class c ON c.oid = co.conrelid LEFT JOIN pg_namespace n_c ON n_c.oid = c.relnamespace
        WHERE co.contype <> 't' AND {_ns("n")} AND (c.oid IS NULL OR {_kept_rel("c")})
        AND (co.contypid = 0 OR {_not_member("pg_type", "co.contypid")})""",
    # valid indexes (pg_dump leaves out an invalid one)
    f"""SELECT 'relation ' || c.oid::regclass::text, 'index ' || x.indexrelid::regclass::text || ': '
        || pg_get_indexdef(x.indexrelid) || CASE WHEN x.indisclustered THEN ' CLUSTER' ELSE '' END
        || CASE WHEN x.indisreplident THEN ' REPLICA IDENTITY' ELSE '' END
        || {_field("tablespace", "(SELECT spcname FROM pg_tablespace WHERE oid = ic.reltablespace)")}
        || {_field("attached_to", "(SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = x.indexrelid)")}
        || {_field("statistics", "(SELECT string_agg(ia.attnum || ':' || ia.attstattarget, ',' ORDER BY ia.attnum) FROM pg_attribute ia WHERE ia.attrelid = x.indexrelid AND ia.attstattarget >= 0)")}
        || {_field("comment", _comment("x.indexrelid", "pg_class"))}
        FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
        JOIN pg_namespace n_c ON n_c.oid = c.relnamespace
        WHERE x.indisvalid AND x.indisready AND {_kept_rel("c")}""",
    # functions and procedures, line by line (aggregates are uncovered)
    f"""SELECT 'function ' || p.oid::regprocedure::text, 'function ' || p.oid::regprocedure::text || ' | ' || l.line
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
             LATERAL regexp_split_to_table(pg_get_functiondef(p.oid), E'\\n') WITH ORDINALITY AS l(line, k)
        WHERE p.prokind <> 'a' AND {_ns("n")} AND {_not_member("pg_proc", "p.oid")}""",
    f"""SELECT 'function ' || p.oid::regprocedure::text, 'function ' || p.oid::regprocedure::text
        || ' acl=' || {_acl("p.proacl", "p.proowner", "f")} || {_field("comment", _comment("p.oid", "pg_proc"))}
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prokind <> 'a' AND {_ns("n")} AND {_not_member("pg_proc", "p.oid")}""",
    # triggers
    f"""SELECT 'relation ' || c.oid::regclass::text, 'trigger ' || c.oid::regclass::text || ' '
        || quote_ident(t.tgname) || ': ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
        || CASE WHEN t.tgparentid <> 0 THEN ' from-parent' ELSE '' END
        || {_field("comment", _comment("t.oid", "pg_trigger"))}
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n_c ON n_c.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND {_kept_rel("c")}""",
    # row security policies
    f"""SELECT 'relation ' || c.oid::regclass::text, 'policy ' || c.oid::regclass::text || ' '
        || quote_ident(p.polname) || ': ' || CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END
        || ' FOR ' || p.polcmd::text || ' TO ' || (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ',' ORDER BY 1) FROM unnest(p.polroles) r)
        || {_field("using", "pg_get_expr(p.polqual, p.polrelid)")}
        || {_field("check", "pg_get_expr(p.polwithcheck, p.polrelid)")}
        || {_field("comment", _comment("p.oid", "pg_policy"))}
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n_c ON n_c.oid = c.relnamespace
        WHERE {_kept_rel("c")}""",
    # rules (a view's _RETURN rule is its definition, above)
    f"""SELECT 'relation ' || c.oid::regclass::text, 'rule ' || c.oid::regclass::text || ' '
        || quote_ident(r.rulename) || ': ' || pg_get_ruledef(r.oid) || ' enabled=' || r.ev_enabled::text
        || {_field("comment", _comment("r.oid", "pg_rewrite"))}
        FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n_c ON n_c.oid = c.relnamespace
        WHERE r.rulename <> '_RETURN' AND {_kept_rel("c")}""",
    # enum, composite and domain types (a composite type's columns are listed with the relations)
    f"""SELECT 'relation ' || t.oid::regtype::text, 'type ' || t.oid::regtype::text || ' ' || t.typtype::text
        || CASE t.typtype::text
             WHEN 'e' THEN ' (' || (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) || ')'
             WHEN 'd' THEN ' ' || format_type(t.typbasetype, t.typtypmod) || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
               || {_field("default", "t.typdefault")}
               || {_field("collate", "CASE WHEN t.typcollation <> (SELECT b.typcollation FROM pg_type b WHERE b.oid = t.typbasetype) THEN t.typcollation::regcollation::text END")}
             ELSE '' END
        || ' acl=' || {_acl("t.typacl", "t.typowner", "T")} || {_field("comment", _comment("t.oid", "pg_type"))}
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
        AND {_ns("n")} AND {_not_member("pg_type", "t.oid")}""",
    # extensions (pg_dump prints name, schema and comment; the built-in plpgsql not at all)
    f"""SELECT 'extension ' || quote_ident(x.extname), 'extension ' || quote_ident(x.extname)
        || ' schema=' || quote_ident(x.extnamespace::regnamespace::text)
        || {_field("comment", _comment("x.oid", "pg_extension"))}
        FROM pg_extension x WHERE x.oid >= 16384""",
    # extended statistics
    f"""SELECT 'relation ' || c.oid::regclass::text, 'statistics ' || pg_get_statisticsobjdef(s.oid)
        || {_field("target", "nullif(s.stxstattarget, -1)")} || {_field("comment", _comment("s.oid", "pg_statistic_ext"))}
        FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
        JOIN pg_class c ON c.oid = s.stxrelid JOIN pg_namespace n_c ON n_c.oid = c.relnamespace
        WHERE {_ns("n")} AND {_kept_rel("c")}""",
]

# What pg_dump would print that the parts above do not describe: named only, so that the
# snapshot is marked incomplete (and the caller uses pg_dump).
_UNCOVERED = [
    f"""SELECT 'aggregate ' || p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prokind = 'a' AND {_ns("n")} AND {_not_member("pg_proc", "p.oid")}""",
    f"""SELECT 'type ' || t.oid::regtype::text || ' ' || t.typtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typtype::text NOT IN ('e', 'd', 'c') AND {_ns("n")} AND {_not_member("pg_type", "t.oid")}
        AND NOT (t.typelem <> 0 AND EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typarray = t.oid))""",
    f"""SELECT 'foreign table ' || c.oid::regclass::text FROM pg_class c JOIN pg_namespace n_c ON n_c.oid = c.relnamespace
        WHERE c.relkind = 'f' AND {_kept_rel("c")}""",
    *(
        f"""SELECT pg_describe_object('{catalog}'::regclass, o.oid, 0) FROM {catalog} o JOIN pg_namespace n ON n.oid = o.{ns}
            WHERE {_ns("n")} AND {_not_member(catalog, "o.oid")}"""
        for catalog, ns in (
            ("pg_operator", "oprnamespace"),
            ("pg_opclass", "opcnamespace"),
            ("pg_opfamily", "opfnamespace"),
            ("pg_collation", "collnamespace"),
            ("pg_conversion", "connamespace"),
            ("pg_ts_config", "cfgnamespace"),
            ("pg_ts_dict", "dictnamespace"),
            ("pg_ts_parser", "prsnamespace"),
            ("pg_ts_template", "tmplnamespace"),
        )
    ),
    *(
        f"SELECT pg_describe_object('{catalog}'::regclass, o.oid, 0) FROM {catalog} o "
        f"WHERE o.oid >= 16384 AND {_not_member(catalog, 'o.oid')}"
        for catalog in (
            "pg_cast",
            "pg_language",
            "pg_transform",
            "pg_am",
            "pg_foreign_data_wrapper",
            "pg_foreign_server",
            "pg_publication",
            "pg_event_trigger",
            "pg_default_acl",
        )
    ),
    "SELECT pg_describe_object('pg_user_mapping'::regclass, oid, 0) FROM pg_user_mapping",
    "SELECT 'subscription ' || quote_ident(subname) FROM pg_subscription "
    "WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    "SELECT 'security label on ' || pg_describe_object(classoid, objoid, objsubid) FROM pg_seclabel",
]


def take(conn: psycopg.Connection, lock_wait: float = 5.0) -> tuple[str, bool]:
    """(text, complete): the snapshot of the database `conn` is connected to, read by one
    statement (one snapshot of the catalogs) with search_path empty (names schema-qualified, as
    pg_dump prints them). `complete` is False when the database holds something only pg_dump
    describes (the text then names it on UNCOVERED lines). A view's definition is read under the
    lock pg_dump also takes: waited for at most `lock_wait` s (raises LockNotAvailable after).

    `conn` is an autocommit connection of the caller's own: its session keeps search_path '',
    jit off and that lock_timeout. The query is prepared on it (planning it costs more than
    running it); a server that loses prepared statements between transactions (a
    transaction-pooling proxy) gets it unprepared."""
    conn.execute(
        "SELECT set_config('search_path', '', false), set_config('jit', 'off', false), "
        "set_config('lock_timeout', %s, false)",
        (f"{int(lock_wait * 1000)}ms",),
    )
    try:
        rows = conn.execute(_query(), prepare=True).fetchall()
    except (psycopg.errors.InvalidSqlStatementName, psycopg.errors.DuplicatePreparedStatement):
        rows = conn.execute(_query(), prepare=False).fetchall()
    lines = [HEADER, *(line for _o, line in rows)]
    return "\n".join(lines) + "\n", not any(line.startswith(UNCOVERED) for line in lines)


_QUERY_CACHE: list[str] = []


def _query() -> str:
    """One statement: every part's rows, grouped by object, a definition's lines in order."""
    if not _QUERY_CACHE:
        parts = []
        for part in _PARTS:
            if "WITH ORDINALITY" in part:  # a definition: its lines in their order
                parts.append(part.replace("SELECT ", "SELECT 1 AS grp, l.k AS k, ", 1))
            else:
                parts.append(part.replace("SELECT ", "SELECT 0 AS grp, 0::bigint AS k, ", 1))
        # what only pg_dump describes, last (after every object name: '~' sorts after them)
        parts += [
            f"SELECT 2, 0::bigint, '~', '{UNCOVERED} ' || u.what FROM ({q}) u(what)" for q in _UNCOVERED
        ]
        union = " UNION ALL ".join(f"({p})" for p in parts)
        _QUERY_CACHE.append(
            f'SELECT o, line FROM ({union}) facts(grp, k, o, line) ORDER BY o COLLATE "C", grp, CASE WHEN grp <> 1 THEN line END COLLATE "C", k'
        )
    return _QUERY_CACHE[0]


def is_catalog(text: str) -> bool:
    """Whether a stored snapshot is one of these (else it is pg_dump's)."""
    return text.startswith(HEADER[:40])
