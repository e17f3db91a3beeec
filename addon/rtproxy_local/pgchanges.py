"""postgres_changes for the local server: join bindings, the CDC subscription outcome, and fake changes.

There is no database: a "change" is whatever `LocalRealtime.emit_postgres_change` is given, delivered to
the channels whose bindings match, shaped like Realtime's postgres_cdc_rls output. Binding parsing mirrors
Extensions.PostgresCdcRls.Subscriptions.parse_subscription_params so the subscription error strings match.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rtproxy_core.catalog import say

from .elixir import inspect

EVENTS = ("INSERT", "UPDATE", "DELETE")
FILTER_OPS = (
    "eq",
    "neq",
    "lt",
    "lte",
    "gt",
    "gte",
    "in",
    "like",
    "ilike",
    "is",
    "match",
    "imatch",
    "isdistinct",
)


class BindingError(ValueError):
    """Subscription params Realtime refuses; str() is its `system` message."""


@dataclass(frozen=True, slots=True)
class Binding:
    id: int
    event: str  # "*" | INSERT | UPDATE | DELETE
    schema: str
    table: str  # "*" = every table of the schema
    filters: tuple[tuple[str, str, str, bool], ...]  # (column, op, value, negate)
    select: tuple[str, ...] | None

    def log_params(self) -> str:
        """Realtime's params_to_log/1: `to_log` leaves strings bare and `inspect`s the rest."""
        filters = (
            "["
            + ", ".join(f"{{{_ex(c)}, {_ex(o)}, {_ex(v)}, {str(n).lower()}}}" for c, o, v, n in self.filters)
            + "]"
        )
        select = "nil" if self.select is None else "[" + ", ".join(_ex(s) for s in self.select) + "]"
        return (
            f"event: {self.event}, schema: {self.schema}, table: {self.table}, "
            f"filters: {filters}, select: {select}"
        )

    def matches(self, schema: str, table: str, type_: str, row: dict[str, Any]) -> bool:
        return (
            self.event in ("*", type_)
            and self.schema in ("*", schema)
            and self.table in ("*", table)
            and all(_filter_ok(row, f) for f in self.filters)
        )


def _ex(s: str) -> str:
    return inspect(s)


def binding_id(params: dict[str, Any]) -> int:
    """Stable per filter map, in :erlang.phash2's range (0..2^27-1); never 0 (clients treat 0 as unset)."""
    digest = zlib.crc32(json.dumps(params, sort_keys=True, separators=(",", ":")).encode())
    return digest % (1 << 27) or 1


def parse_binding(params: Any) -> Binding:
    """One `config.postgres_changes` entry -> Binding, or BindingError with Realtime's message
    (subscriptions.ex parse_subscription_params/1, its clauses in their order)."""
    if not isinstance(params, dict):
        raise BindingError(say("postgres.no_params", term=inspect(params)))
    raw_event = params.get("event")
    event = raw_event.upper() if isinstance(raw_event, str) and raw_event.upper() in EVENTS else "*"
    select = params.get("select")
    if isinstance(select, str):  # parse_select/1
        raise BindingError(say("postgres.select_parse"))
    sel = tuple(c for c in select if isinstance(c, str)) if isinstance(select, list) else ()
    schema, table, filt = params.get("schema"), params.get("table"), params.get("filter")
    if isinstance(schema, str) and isinstance(table, str) and isinstance(filt, str):
        filters = _parse_filters(filt)
    elif isinstance(schema, str) and isinstance(table, str) and "filter" not in params:
        filters = ()
    elif isinstance(schema, str) and "table" not in params and "filter" not in params:
        table, filters = "*", ()
    elif isinstance(table, str) and "schema" not in params and "filter" not in params:
        schema, filters = "public", ()
    elif "user_token" in params or "auth_token" in params:
        raise BindingError(say("postgres.no_params", term="<redacted>"))
    else:
        raise BindingError(say("postgres.no_params", term=inspect(params)))
    if sel and (schema == "*" or table == "*"):  # reject_select_on_wildcard/3
        raise BindingError(say("postgres.select_wildcard"))
    return Binding(binding_id(params), event, schema, table, filters, sel or None)


def _split_top_level(text: str) -> list[str]:
    """split_top_level/6: split on commas outside parentheses and double quotes (a quote opens only
    after `.`, `(` or `,`; a backslash escapes inside quotes)."""
    out, cur, depth, quoted, prev = [], [], 0, False, ""
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\" and i + 1 < len(text):
                cur.append(c + text[i + 1])
                prev, i = text[i + 1], i + 2
                continue
            quoted = c != '"'
            cur.append(c)
        elif c == '"' and prev in (".", "(", ","):
            quoted = True
            cur.append(c)
        elif c == "(":
            depth += 1
            cur.append(c)
        elif c == ")":
            depth = max(0, depth - 1)
            cur.append(c)
        elif c == "," and depth == 0:
            out.append("".join(cur))
            cur, c = [], ""
        else:
            cur.append(c)
        prev = c
        i += 1
    out.append("".join(cur))
    return out


def _unquote(value: str) -> str:
    """unquote_value/1: "a\\"b" -> a"b; a value that does not close its quote stays as it is."""
    if not value.startswith('"'):
        return value
    acc: list[str] = []
    i = 1
    while i < len(value):
        c = value[i]
        if c == '"':
            return "".join(acc) if i == len(value) - 1 else value
        if c == "\\" and i + 1 < len(value):
            acc.append(value[i + 1])
            i += 2
            continue
        acc.append(c)
        i += 1
    return value


def _parse_filters(text: str) -> tuple[tuple[str, str, str, bool], ...]:
    """parse_filters/1 and parse_segment/1."""
    if not text.strip():
        return ()
    out = []
    for seg in (s.strip() for s in _split_top_level(text.strip())):
        if not seg:
            raise BindingError(
                say(
                    "postgres.filter_parse",
                    text="filter must not contain empty segments (check for extra commas)",
                )
            )
        col, eq, rest = seg.partition("=")
        negate = rest.startswith("not.")
        op, dot, value = rest.removeprefix("not.").partition(".")
        if not eq:  # the with/else inspects what failed to match
            raise BindingError(say("postgres.filter_parse", text=f"[{inspect(seg)}]"))
        if not dot:
            raise BindingError(say("postgres.filter_parse", text=f"[{inspect(op)}]"))
        if op not in FILTER_OPS:
            raise BindingError(say("postgres.filter_parse", text=f"[{inspect(op)}, {inspect(value)}]"))
        if op == "in":
            if not (len(value) >= 2 and value.startswith("(") and value.endswith(")")):
                raise BindingError(
                    say("postgres.filter_parse", text="`in` filter value must be wrapped by parentheses")
                )
            value = "{" + value[1:-1] + "}"
        else:
            value = _unquote(value)
        out.append((col, op, value, negate))
    return tuple(out)


def _text(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else json.dumps(v)


def _cmp(a: Any, b: str) -> int:
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        x, y = _text(a), b  # type: ignore[assignment]
    return (x > y) - (x < y)


def _like(pattern: str, flags: int = 0) -> re.Pattern[str]:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(regex, flags | re.DOTALL)


def _filter_ok(row: dict[str, Any], f: tuple[str, str, str, bool]) -> bool:
    col, op, val, negate = f
    v = row.get(col)
    if op == "is":
        ok = _text(v) == val.lower()
    elif v is None:
        ok = op == "isdistinct"  # SQL: comparisons with NULL are never true
    elif op in ("eq", "neq", "isdistinct"):
        ok = (_text(v) == val) == (op == "eq")
    elif op in ("lt", "lte", "gt", "gte"):
        c = _cmp(v, val)
        ok = {"lt": c < 0, "lte": c <= 0, "gt": c > 0, "gte": c >= 0}[op]
    elif op == "in":
        ok = _text(v) in [p.strip().strip('"') for p in val[1:-1].split(",")]
    elif op in ("like", "ilike"):
        ok = _like(val, re.IGNORECASE if op == "ilike" else 0).fullmatch(_text(v)) is not None
    else:  # match / imatch: POSIX regex, searched
        ok = re.search(val, _text(v), re.IGNORECASE if op == "imatch" else 0) is not None
    return ok != negate


def _pg_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int8"
    if isinstance(v, float):
        return "float8"
    if isinstance(v, (dict, list)):
        return "jsonb"
    return "text"


def change_data(
    schema: str, table: str, type_: str, record: dict[str, Any] | None, old_record: dict[str, Any] | None
) -> dict[str, Any]:
    """The `data` of a postgres_changes payload. DELETE carries only old_record, INSERT only record."""
    row = record if type_ != "DELETE" else old_record
    data: dict[str, Any] = {
        "columns": [{"name": k, "type": _pg_type(v)} for k, v in (row or {}).items()],
        "commit_timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "errors": None,
        "schema": schema,
        "table": table,
        "type": type_,
    }
    if type_ != "DELETE":
        data["record"] = record or {}
    if type_ != "INSERT":
        data["old_record"] = old_record or {}
    return data
