"""Catalog-based, schema-name-independent snapshots of a PostgreSQL schema.

``snapshot(conn, schema)`` reads the system catalogs (no pg_dump) and describes every object in
``schema`` as plain JSON-able data. Every schema-qualified reference to ``schema`` inside
definitions, defaults and type names is replaced by ``SCHEMA_PLACEHOLDER`` so snapshots of two
differently named schemas compare equal when their structure is identical. Function bodies
(``prosrc``) are deliberately left out: implementations may differ, signatures may not.

``diff(a, b)`` lists the differences between two snapshots as readable strings.

Layout of a snapshot::

    {
      "schema": {"acl", "comment"?},
      "tables": {name: {relkind, persistence, options, row_security, force_row_security,
                        columns: [{name, type, not_null, default, generated, identity,
                                   collation?, comment?}],
                        constraints: {name: {type, definition, deferrable, deferred,
                                             validated}},
                        triggers: {name: {definition, enabled}},
                        policies: {name: {command, permissive, roles, using, with_check}},
                        partition_key?, partition_bound?, inherits, acl, comment?}},
      "views": {name: {relkind, options, columns: [{name, type}], definition, triggers,
                       acl, comment?}},
      "indexes": {name: {table, definition, constraint}},
      "sequences": {name: {type, start, increment, min, max, cache, cycle, owned_by, acl}},
      "types": {name: {kind, ...}},   # composite (attributes), enum, domain, range, base
      "functions": {"name(identity args)": {name, kind, identity_arguments, arguments,
                                            result, language, volatility, strict,
                                            security_definer, returns_set, parallel,
                                            leakproof, config, acl, comment?}},
      "extensions": {name: {version}},
      "data": {"migrations": [{id, breaking}]}   # graphile-worker's migration ledger
    }

The replacement works on the text: any ``<schema>.`` not preceded by an identifier character,
dot or quote is rewritten. So don't name a compared schema after a table alias that occurs in
a view definition (graphile-worker's ``jobs`` view uses ``jobs``, ``tasks``, ``job_queues``).

Privileges (``acl``) are normalised: the owning role's name becomes ``<OWNER>`` and ``None``
means "never granted/revoked" (owner-only defaults).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

SCHEMA_PLACEHOLDER = "<SCHEMA>"
OWNER_PLACEHOLDER = "<OWNER>"

_CONSTRAINT_TYPES = {
    "c": "check",
    "f": "foreign key",
    "p": "primary key",
    "u": "unique",
    "t": "constraint trigger",
    "x": "exclusion",
    "n": "not null",
}
_VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}
_PARALLEL = {"s": "safe", "r": "restricted", "u": "unsafe"}
_FUNCTION_KINDS = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window"}
_TYPE_KINDS = {
    "b": "base",
    "c": "composite",
    "d": "domain",
    "e": "enum",
    "p": "pseudo",
    "r": "range",
    "m": "multirange",
}
_POLICY_COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}
_TRIGGER_ENABLED = {"O": "origin", "D": "disabled", "R": "replica", "A": "always"}


class _Normalizer:
    """Replaces schema-qualified references to one schema with the placeholder."""

    def __init__(self, schema: str, quoted: str, owner: str) -> None:
        self.owner = owner
        forms = {re.escape(quoted), re.escape(schema)}
        # A qualifying schema name: not preceded by an identifier character, a dot or a quote
        # (so ``alias.col`` is left alone) and followed by a dot.
        self._pattern = re.compile(
            r'(?<![\w$."])(?:' + "|".join(sorted(forms, key=len, reverse=True)) + r")(?=\.)"
        )

    def text(self, value: str | None) -> str | None:
        if value is None:
            return None
        return self._pattern.sub(SCHEMA_PLACEHOLDER, value)

    def sql_text(self, value: str | None) -> str | None:
        """Like ``text`` and also collapses whitespace (for deparsed view/policy SQL)."""
        normalized = self.text(value)
        if normalized is None:
            return None
        return " ".join(normalized.split())

    def acl(self, items: Sequence[str] | None) -> list[str] | None:
        if items is None:
            return None
        result = []
        for item in items:
            grantee, _, rest = item.partition("=")
            privileges, _, grantor = rest.partition("/")
            if grantee == self.owner:
                grantee = OWNER_PLACEHOLDER
            if grantor == self.owner:
                grantor = OWNER_PLACEHOLDER
            result.append(f"{grantee}={privileges}/{grantor}")
        return sorted(result)


def _fetch(
    conn: psycopg.Connection[Any], query: str, params: Iterable[Any]
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, tuple(params))
        return cur.fetchall()


def _comment(target: dict[str, Any], comment: str | None) -> None:
    if comment is not None:
        target["comment"] = comment


def snapshot(
    conn: psycopg.Connection[Any], schema: str, *, include_not_null_constraints: bool = False
) -> dict[str, Any]:
    """Describe everything in ``schema`` (see the module docstring for the layout).

    PostgreSQL >= 18 also records column NOT NULLs as named ``pg_constraint`` rows (whose
    names depend on the table's rename history); they are left out unless
    ``include_not_null_constraints``, since the columns' ``not_null`` already covers them and
    snapshots then stay comparable across server versions.
    """
    with conn.cursor() as cur:
        cur.execute("select current_setting('search_path')")
        row = cur.fetchone()
        assert row is not None
        old_search_path = row[0]
        # With an empty search_path the deparsing functions qualify every non-catalog name,
        # which makes the schema name visible (and replaceable) everywhere.
        cur.execute("select set_config('search_path', '', false)")
    try:
        return _snapshot(conn, schema, include_not_null_constraints)
    finally:
        with conn.cursor() as cur:
            cur.execute("select set_config('search_path', %s, false)", (old_search_path,))


def _snapshot(
    conn: psycopg.Connection[Any], schema: str, include_not_null_constraints: bool
) -> dict[str, Any]:
    ns_rows = _fetch(
        conn,
        """
        select n.oid, quote_ident(n.nspname) as quoted, pg_get_userbyid(n.nspowner) as owner,
               n.nspacl::text[] as acl, obj_description(n.oid, 'pg_namespace') as comment
        from pg_namespace n where n.nspname = %s
        """,
        [schema],
    )
    if not ns_rows:
        raise LookupError(f"schema {schema!r} does not exist")
    ns = ns_rows[0]
    nsoid = ns["oid"]
    norm = _Normalizer(schema, ns["quoted"], ns["owner"])

    result: dict[str, Any] = {
        "schema": {"acl": norm.acl(ns["acl"])},
        "tables": {},
        "views": {},
        "indexes": {},
        "sequences": {},
        "types": {},
        "functions": {},
        "extensions": {},
        "data": {},
    }
    _comment(result["schema"], ns["comment"])

    # -- relations ------------------------------------------------------------------------
    relations = _fetch(
        conn,
        """
        select c.oid, c.relname, c.relkind, c.relpersistence, c.reloptions,
               c.relrowsecurity, c.relforcerowsecurity, c.relacl::text[] as acl,
               pg_get_userbyid(c.relowner) as owner,
               obj_description(c.oid, 'pg_class') as comment,
               case when c.relkind = 'p' then pg_get_partkeydef(c.oid) end as partition_key,
               case when c.relispartition then pg_get_expr(c.relpartbound, c.oid) end
                 as partition_bound,
               case when c.relkind in ('v', 'm') then pg_get_viewdef(c.oid, true) end
                 as view_definition,
               array(select format('%%I.%%I', pn.nspname, p.relname)
                     from pg_inherits i
                     join pg_class p on p.oid = i.inhparent
                     join pg_namespace pn on pn.oid = p.relnamespace
                     where i.inhrelid = c.oid order by i.inhseqno) as inherits
        from pg_class c
        where c.relnamespace = %s::oid and c.relkind in ('r', 'p', 'f', 'v', 'm')
        order by c.relname
        """,
        [nsoid],
    )
    columns = _fetch(
        conn,
        """
        select a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod) as type,
               a.attnotnull, a.attidentity, a.attgenerated,
               pg_get_expr(d.adbin, d.adrelid) as default_expr,
               case when a.attcollation <> t.typcollation then
                 (select format('%%I.%%I', cn.nspname, co.collname)
                  from pg_collation co join pg_namespace cn on cn.oid = co.collnamespace
                  where co.oid = a.attcollation) end as collation,
               col_description(a.attrelid, a.attnum) as comment
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_type t on t.oid = a.atttypid
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where c.relnamespace = %s::oid and c.relkind in ('r', 'p', 'f', 'v', 'm')
          and a.attnum > 0 and not a.attisdropped
        order by a.attrelid, a.attnum
        """,
        [nsoid],
    )
    columns_by_rel: dict[int, list[dict[str, Any]]] = {}
    for col in columns:
        columns_by_rel.setdefault(col["attrelid"], []).append(col)

    constraints = _fetch(
        conn,
        """
        select con.conrelid, con.conname, con.contype, pg_get_constraintdef(con.oid) as def,
               con.condeferrable, con.condeferred, con.convalidated
        from pg_constraint con
        join pg_class c on c.oid = con.conrelid
        where c.relnamespace = %s::oid and (con.contype <> 'n' or %s)
        order by con.conrelid, con.conname
        """,
        [nsoid, include_not_null_constraints],
    )
    triggers = _fetch(
        conn,
        """
        select tg.tgrelid, tg.tgname, pg_get_triggerdef(tg.oid) as def, tg.tgenabled
        from pg_trigger tg
        join pg_class c on c.oid = tg.tgrelid
        where c.relnamespace = %s::oid and not tg.tgisinternal
        order by tg.tgrelid, tg.tgname
        """,
        [nsoid],
    )
    policies = _fetch(
        conn,
        """
        select pol.polrelid, pol.polname, pol.polcmd, pol.polpermissive,
               array(select case when r = 0 then 'public' else pg_get_userbyid(r) end
                     from unnest(pol.polroles) as r order by 1) as roles,
               pg_get_expr(pol.polqual, pol.polrelid) as qual,
               pg_get_expr(pol.polwithcheck, pol.polrelid) as with_check
        from pg_policy pol
        join pg_class c on c.oid = pol.polrelid
        where c.relnamespace = %s::oid
        order by pol.polrelid, pol.polname
        """,
        [nsoid],
    )

    for rel in relations:
        oid = rel["oid"]
        cols = columns_by_rel.get(oid, [])
        rel_triggers = {
            t["tgname"]: {
                "definition": norm.text(t["def"]),
                "enabled": _TRIGGER_ENABLED.get(t["tgenabled"], t["tgenabled"]),
            }
            for t in triggers
            if t["tgrelid"] == oid
        }
        if rel["relkind"] in ("v", "m"):
            view: dict[str, Any] = {
                "relkind": rel["relkind"],
                "options": sorted(rel["reloptions"] or []),
                "columns": [{"name": c["attname"], "type": norm.text(c["type"])} for c in cols],
                "definition": norm.sql_text(rel["view_definition"]),
                "triggers": rel_triggers,
                "acl": norm.acl(rel["acl"]),
            }
            _comment(view, rel["comment"])
            result["views"][rel["relname"]] = view
            continue

        table: dict[str, Any] = {
            "relkind": rel["relkind"],
            "persistence": rel["relpersistence"],
            "options": sorted(rel["reloptions"] or []),
            "row_security": rel["relrowsecurity"],
            "force_row_security": rel["relforcerowsecurity"],
            "columns": [],
            "constraints": {},
            "triggers": rel_triggers,
            "policies": {},
            "inherits": [norm.text(p) for p in rel["inherits"]],
            "acl": norm.acl(rel["acl"]),
        }
        if rel["partition_key"] is not None:
            table["partition_key"] = norm.text(rel["partition_key"])
        if rel["partition_bound"] is not None:
            table["partition_bound"] = norm.text(rel["partition_bound"])
        _comment(table, rel["comment"])
        for c in cols:
            column: dict[str, Any] = {
                "name": c["attname"],
                "type": norm.text(c["type"]),
                "not_null": c["attnotnull"],
                "default": None if c["attgenerated"] else norm.text(c["default_expr"]),
                "generated": norm.text(c["default_expr"]) if c["attgenerated"] else None,
                "identity": {"a": "always", "d": "by default"}.get(c["attidentity"]),
            }
            if c["collation"] is not None:
                column["collation"] = c["collation"]
            _comment(column, c["comment"])
            table["columns"].append(column)
        for con in constraints:
            if con["conrelid"] != oid:
                continue
            table["constraints"][con["conname"]] = {
                "type": _CONSTRAINT_TYPES.get(con["contype"], con["contype"]),
                "definition": norm.text(con["def"]),
                "deferrable": con["condeferrable"],
                "deferred": con["condeferred"],
                "validated": con["convalidated"],
            }
        for pol in policies:
            if pol["polrelid"] != oid:
                continue
            table["policies"][pol["polname"]] = {
                "command": _POLICY_COMMANDS.get(pol["polcmd"], pol["polcmd"]),
                "permissive": pol["polpermissive"],
                "roles": [OWNER_PLACEHOLDER if r == norm.owner else r for r in pol["roles"]],
                "using": norm.sql_text(pol["qual"]),
                "with_check": norm.sql_text(pol["with_check"]),
            }
        result["tables"][rel["relname"]] = table

    # -- indexes --------------------------------------------------------------------------
    for idx in _fetch(
        conn,
        """
        select ic.relname as name, tc.relname as table_name,
               pg_get_indexdef(i.indexrelid) as def,
               (select con.conname from pg_constraint con
                where con.conindid = i.indexrelid and con.conrelid = i.indrelid
                  and con.contype in ('p', 'u', 'x')) as constraint_name
        from pg_index i
        join pg_class ic on ic.oid = i.indexrelid
        join pg_class tc on tc.oid = i.indrelid
        where ic.relnamespace = %s::oid
        order by ic.relname
        """,
        [nsoid],
    ):
        result["indexes"][idx["name"]] = {
            "table": idx["table_name"],
            "definition": norm.text(idx["def"]),
            "constraint": idx["constraint_name"],
        }

    # -- sequences ------------------------------------------------------------------------
    for seq in _fetch(
        conn,
        """
        select c.relname as name, format_type(s.seqtypid, null) as type, s.seqstart,
               s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
               c.relacl::text[] as acl,
               (select format('%%s.%%s',
                              case when tc.relnamespace = c.relnamespace then tc.relname
                                   else format('%%I.%%I', tn.nspname, tc.relname) end,
                              a.attname)
                  || case d.deptype when 'i' then ' (identity)' else '' end
                from pg_depend d
                join pg_class tc on tc.oid = d.refobjid
                join pg_namespace tn on tn.oid = tc.relnamespace
                join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
                where d.classid = 'pg_class'::regclass and d.objid = c.oid
                  and d.refclassid = 'pg_class'::regclass and d.refobjsubid > 0
                  and d.deptype in ('a', 'i')
                limit 1) as owned_by
        from pg_class c
        join pg_sequence s on s.seqrelid = c.oid
        where c.relnamespace = %s::oid and c.relkind = 'S'
        order by c.relname
        """,
        [nsoid],
    ):
        result["sequences"][seq["name"]] = {
            "type": seq["type"],
            "start": seq["seqstart"],
            "increment": seq["seqincrement"],
            "min": seq["seqmin"],
            "max": seq["seqmax"],
            "cache": seq["seqcache"],
            "cycle": seq["seqcycle"],
            "owned_by": seq["owned_by"],
            "acl": norm.acl(seq["acl"]),
        }

    # -- types ----------------------------------------------------------------------------
    types = _fetch(
        conn,
        """
        select t.oid, t.typname, t.typtype, t.typrelid, t.typnotnull,
               format_type(t.typbasetype, t.typtypmod) as base_type,
               pg_get_expr(t.typdefaultbin, 0) as default_expr,
               t.typacl::text[] as acl, obj_description(t.oid, 'pg_type') as comment,
               array(select e.enumlabel::text from pg_enum e where e.enumtypid = t.oid
                     order by e.enumsortorder) as labels,
               (select format_type(r.rngsubtype, null) from pg_range r
                where r.rngtypid = t.oid) as range_subtype
        from pg_type t
        left join pg_class c on c.oid = t.typrelid
        where t.typnamespace = %s::oid
          and (t.typtype <> 'c' or c.relkind = 'c')       -- skip tables' row types
          and not (t.typtype = 'b' and t.typcategory = 'A') -- skip implicit array types
          and t.typtype <> 'm'                            -- implicit multirange types
        order by t.typname
        """,
        [nsoid],
    )
    attributes = _fetch(
        conn,
        """
        select a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod) as type,
               case when a.attcollation <> t.typcollation then
                 (select format('%%I.%%I', cn.nspname, co.collname)
                  from pg_collation co join pg_namespace cn on cn.oid = co.collnamespace
                  where co.oid = a.attcollation) end as collation
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_type t on t.oid = a.atttypid
        where c.relnamespace = %s::oid and c.relkind = 'c' and a.attnum > 0 and not a.attisdropped
        order by a.attrelid, a.attnum
        """,
        [nsoid],
    )
    domain_constraints = _fetch(
        conn,
        """
        select con.contypid, con.conname, pg_get_constraintdef(con.oid) as def
        from pg_constraint con
        join pg_type t on t.oid = con.contypid
        where t.typnamespace = %s::oid
        order by con.contypid, con.conname
        """,
        [nsoid],
    )
    for typ in types:
        kind = _TYPE_KINDS.get(typ["typtype"], typ["typtype"])
        entry: dict[str, Any] = {"kind": kind}
        if kind == "composite":
            entry["attributes"] = []
            for a in attributes:
                if a["attrelid"] != typ["typrelid"]:
                    continue
                attribute = {"name": a["attname"], "type": norm.text(a["type"])}
                if a["collation"] is not None:
                    attribute["collation"] = a["collation"]
                entry["attributes"].append(attribute)
        elif kind == "enum":
            entry["labels"] = list(typ["labels"])
        elif kind == "domain":
            entry["base_type"] = norm.text(typ["base_type"])
            entry["not_null"] = typ["typnotnull"]
            entry["default"] = norm.text(typ["default_expr"])
            entry["constraints"] = {
                c["conname"]: norm.text(c["def"])
                for c in domain_constraints
                if c["contypid"] == typ["oid"]
            }
        elif kind == "range":
            entry["subtype"] = norm.text(typ["range_subtype"])
        entry["acl"] = norm.acl(typ["acl"])
        _comment(entry, typ["comment"])
        result["types"][typ["typname"]] = entry

    # -- functions ------------------------------------------------------------------------
    for fn in _fetch(
        conn,
        """
        select p.proname, p.prokind,
               pg_get_function_identity_arguments(p.oid) as identity_args,
               pg_get_function_arguments(p.oid) as args,
               pg_get_function_result(p.oid) as result,
               l.lanname, p.provolatile, p.proisstrict, p.prosecdef, p.proretset,
               p.proparallel, p.proleakproof, p.proconfig, p.proacl::text[] as acl,
               obj_description(p.oid, 'pg_proc') as comment
        from pg_proc p
        join pg_language l on l.oid = p.prolang
        where p.pronamespace = %s::oid
        order by p.proname, identity_args
        """,
        [nsoid],
    ):
        identity_args = norm.text(fn["identity_args"])
        function: dict[str, Any] = {
            "name": fn["proname"],
            "kind": _FUNCTION_KINDS.get(fn["prokind"], fn["prokind"]),
            "identity_arguments": identity_args,
            "arguments": norm.text(fn["args"]),
            "result": norm.text(fn["result"]),
            "language": fn["lanname"],
            "volatility": _VOLATILITY.get(fn["provolatile"], fn["provolatile"]),
            "strict": fn["proisstrict"],
            "security_definer": fn["prosecdef"],
            "returns_set": fn["proretset"],
            "parallel": _PARALLEL.get(fn["proparallel"], fn["proparallel"]),
            "leakproof": fn["proleakproof"],
            "config": [norm.text(c) for c in fn["proconfig"] or []],
            "acl": norm.acl(fn["acl"]),
        }
        _comment(function, fn["comment"])
        result["functions"][f"{fn['proname']}({identity_args})"] = function

    # -- extensions -----------------------------------------------------------------------
    for ext in _fetch(
        conn,
        "select extname, extversion from pg_extension where extnamespace = %s::oid order by 1",
        [nsoid],
    ):
        result["extensions"][ext["extname"]] = {"version": ext["extversion"]}

    # -- graphile-worker's migration ledger (data, but part of the compatibility contract) --
    migrations = result["tables"].get("migrations")
    if migrations is not None:
        names = [c["name"] for c in migrations["columns"]]
        selected = [n for n in ("id", "breaking") if n in names]
        if "id" in selected:
            query = sql.SQL("select {} from {}.migrations order by id").format(
                sql.SQL(", ").join(map(sql.Identifier, selected)), sql.Identifier(schema)
            )
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(query)
                result["data"]["migrations"] = [dict(r) for r in cur.fetchall()]

    return result


# -- diff ---------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


def _is_named_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and "name" in v for v in value)
    )


def _diff(a: Any, b: Any, path: str, labels: tuple[str, str], out: list[str]) -> None:
    la, lb = labels
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in b:
                out.append(f"{sub}: only in {la}: {_fmt(a[key])}")
            elif key not in a:
                out.append(f"{sub}: only in {lb}: {_fmt(b[key])}")
            else:
                _diff(a[key], b[key], sub, labels, out)
        return
    if (_is_named_list(a) or a == []) and (_is_named_list(b) or b == []) and a != b:
        # Ordered named items (columns, attributes): report order, then per-item changes.
        names_a = [item["name"] for item in a]
        names_b = [item["name"] for item in b]
        if names_a != names_b:
            out.append(f"{path}: names/order differ: {la}={names_a} {lb}={names_b}")
        by_name_b = {item["name"]: item for item in b}
        for item in a:
            if item["name"] in by_name_b:
                _diff(item, by_name_b[item["name"]], f"{path}[{item['name']}]", labels, out)
        return
    if (
        isinstance(a, list)
        and isinstance(b, list)
        and a != b
        and any(isinstance(v, dict | list) for v in [*a, *b])
    ):
        # Lists of structured rows (e.g. the migrations ledger): compare position by position.
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _diff(x, y, f"{path}[{i}]", labels, out)
        for i, x in enumerate(a[len(b) :], start=len(b)):
            out.append(f"{path}[{i}]: only in {la}: {_fmt(x)}")
        for i, y in enumerate(b[len(a) :], start=len(a)):
            out.append(f"{path}[{i}]: only in {lb}: {_fmt(y)}")
        return
    if a != b:
        out.append(f"{path}: {la}={_fmt(a)} {lb}={_fmt(b)}")


def diff(a: Any, b: Any, *, labels: tuple[str, str] = ("a", "b")) -> list[str]:
    """Human-readable differences between two snapshots (empty when they are equal)."""
    out: list[str] = []
    _diff(a, b, "", labels, out)
    return out
