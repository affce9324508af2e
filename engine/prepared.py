"""Statements on the hot paths, compiled once per database dialect and run as driver SQL.

A trigger or an acknowledgement runs a handful of small statements in one short transaction. Through
SQLAlchemy Core each costs about 28 µs of Python before the database sees it (the compiled-cache lookup, the
execution context, the result set-up) and the database itself about 5–20 µs; one call each was bound by
that. A `Prepared` statement keeps the SQL its dialect compiled, the order of its parameters and the column
types' own bind processors (aware UTC datetimes, JSON, booleans — the same conversions Core applies), and
runs on the DBAPI cursor of the same connection, inside the same transaction. What Core does around a
cursor call is kept: the `before_cursor_execute` listeners run, a driver error is raised as SQLAlchemy's
DBAPIError subclass (a deadlock is still what `engine.db.retrying` retries), a lost connection is
invalidated. What is left out is Core's result machinery: rows come back as named tuples with the column
types' result conversions. A small statement costs about 5 µs of Python instead of 28–90 µs.

Only what the caller gives is bound: an INSERT is compiled for exactly the columns given (per set of
column names), so a column left out takes its server-side default or NULL — never a Python-side default,
which the hot paths always give themselves (`Prepared` refuses a statement that would need one).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, literal_column
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler

_Processor = Callable[[Any], Any] | None
# Databases whose driver binds a Python list as one array parameter: the caller's IN lists go as `= ANY`.
_ARRAYS = frozenset({"postgresql"})
# From this many items an array's statement is planned for its values (`_Compiled.fresh`).
PLAN_FOR_VALUES_FROM = 8
# Compiled forms kept per statement (per database, column set and IN-list length).
_KEPT = 64


class _Compiled:
    __slots__ = ("arrays", "constants", "lists", "order", "procs", "results", "row", "sql")

    def __init__(
        self,
        sql: str,
        order: tuple[str, ...] | None,
        processors: dict[str, _Processor],
        constants: dict[str, Any],
        results: list[_Processor],
        row: Any,
        lists: dict[str, int],
        arrays: dict[str, _Processor],
    ) -> None:
        self.lists = lists  # the caller's IN lists: their names and lengths
        # PostgreSQL: the caller's IN lists bound as one array each, with its items' processor.
        self.arrays = arrays
        self.sql = sql
        self.order = order  # positional drivers (SQLite): the parameter names in placeholder order
        self.procs = {name: p for name, p in processors.items() if p is not None}
        self.constants = constants  # values the statement carries itself (status == 'resolved'), bound
        self.results = results  # per selected column: the type's result processor (as Core applies it)
        self.row = row  # a named tuple of the selected columns' labels

    def args(self, params: Mapping[str, Any], memo: dict[Any, Any]) -> Sequence[Any] | dict[str, Any]:
        """The driver's parameters. `memo`: conversions already made in this call — a batch's rows share
        their time stamp, deadlines and policy snapshot as one object each, converted once."""
        procs = self.procs
        if self.constants or self.lists or self.arrays:
            params = {**self.constants, **params}
            for name in self.lists:
                params.update((f"{name}__{i}", v) for i, v in enumerate(params.pop(name)))
            for name, item in self.arrays.items():
                params[name] = [item(v) for v in params[name]] if item is not None else list(params[name])

        names = self.order if self.order is not None else tuple(params)
        out = []
        for name in names:
            value = params[name]
            # None goes through a processor too, as in Core (a JSON column stores JSON null for it).
            processor = procs.get(name)
            out.append(value if processor is None else _converted_once(memo, processor, value))
        return tuple(out) if self.order is not None else dict(zip(names, out, strict=True))

    def fresh(self, args: Any) -> bool:
        """Whether to plan this execution for its values: an array longer than a few items. A prepared
        statement is planned once for any values, and that plan, made while the table was small, can scan
        every open incident comparing each with every key of the array (22 ms for 100 keys at 12,000 open
        incidents, 3 ms planned for the keys). Short arrays (one acknowledgement's ids) keep the saved plan."""
        return bool(self.arrays) and any(len(args[name]) > PLAN_FOR_VALUES_FROM for name in self.arrays)


class Prepared:
    """A Core statement run through the driver with Core's own type conversions. An IN list of the caller's
    (an expanding bindparam) is compiled once per length; a constant IN list is written into the SQL."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, frozenset[str] | None, bool, tuple[Any, ...]], _Compiled] = {}
        self._expanding: frozenset[str] | None = None

    def _compile(
        self, dialect: Dialect, keys: frozenset[str] | None, many: bool, lists: tuple[Any, ...]
    ) -> _Compiled:
        compiled = self.statement.compile(
            dialect=dialect,
            column_keys=sorted(keys) if keys is not None else None,
            for_executemany=many,  # no implicit RETURNING of the key for rows nobody reads back
        )
        assert isinstance(compiled, SQLCompiler)
        if compiled.insert_prefetch or compiled.update_prefetch:
            # A Python-side default would have to run here; the hot paths give every such column.
            names = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
            raise ValueError(f"Prepared statement needs values for {', '.join(names)}")
        sql = compiled.string
        positional = bool(compiled.positional)
        order = list(compiled.positiontup or ()) if positional else []
        lengths = dict(lists)
        processors: dict[str, _Processor] = {}
        constants: dict[str, Any] = {}
        arrays: dict[str, _Processor] = {}
        for name, bind in compiled.binds.items():
            token = f"__[POSTCOMPILE_{name}]"
            used = name in order if positional else f"%({name})s" in sql
            if token not in sql and not used:
                continue  # another name Core keeps for the same parameter
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if not bind.expanding:
                processors[name] = processor
                if not bind.required and bind.callable is None:
                    constants[name] = bind.value
                continue
            if (
                not bind.required
            ):  # a constant IN list of the statement's own (statuses): written into the SQL
                sql = sql.replace(token, ", ".join(_literal(v) for v in bind.value or ()))
                if positional:
                    order.remove(name)
                continue
            if dialect.name in _ARRAYS and not positional:
                # PostgreSQL: one array parameter, `= ANY (…)`: one statement for any length, which a long
                # list runs unprepared, planned for its values (`_Compiled.fresh`).
                negated, plain = f"NOT IN ({token})", f"IN ({token})"
                sql = sql.replace(negated, f"<> ALL (%({name})s)").replace(plain, f"= ANY (%({name})s)")
                if token in sql:
                    raise ValueError(
                        f"Prepared statement: IN list {name} not in a form it can bind as an array"
                    )
                arrays[name] = processor
                continue
            # An IN list of the caller's: one placeholder per item, for the list's length in this call.
            items = [f"{name}__{i}" for i in range(lengths[name])]
            marks = ["?" if positional else f"%({item})s" for item in items]
            sql = sql.replace(token, ", ".join(marks))
            if positional:
                at = order.index(name)
                order[at : at + 1] = items
            processors.update(dict.fromkeys(items, processor))
        selected = list(getattr(self.statement, "selected_columns", ()))
        if not selected and compiled.effective_returning:
            selected = list(compiled.effective_returning)
        results = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in selected]
        row = namedtuple("Row", [c.key for c in selected], rename=True) if selected else tuple
        return _Compiled(
            sql,
            tuple(order) if positional else None,
            processors,
            constants,
            results,
            row,
            {n: length for n, length in lengths.items() if n not in arrays},
            arrays,
        )

    def _for(
        self,
        conn: Connection,
        keys: frozenset[str] | None,
        many: bool = False,
        params: Mapping[str, Any] = {},
    ) -> _Compiled:
        # One driver per database in this application: the dialect's name tells them apart.
        if self._expanding is None:
            # The caller's IN lists, by name: a list given for another parameter (a JSON column's value)
            # is a value, not an IN list.
            found = self.statement.compile(dialect=conn.dialect)
            self._expanding = frozenset(n for n, b in found.binds.items() if b.expanding and b.required)
        # One compiled form per list length, except where the lists are bound as arrays (any length).
        array = conn.dialect.name in _ARRAYS
        lists = tuple((n, 0 if array else len(params[n])) for n in sorted(self._expanding) if n in params)
        key = (conn.dialect.name, keys, many, lists)
        compiled = self._compiled.get(key)
        if compiled is None:
            if len(self._compiled) >= _KEPT:  # batches of many lengths: compile again rather than grow
                self._compiled.clear()
            compiled = self._compiled[key] = self._compile(conn.dialect, keys, many, lists)
        return compiled

    def run(self, conn: Connection, params: Mapping[str, Any], *, columns: bool = False) -> list[Any]:
        """Execute with `params` and return the rows (an INSERT … RETURNING's too) as `rows` does.
        `columns=True` for an INSERT or UPDATE whose column list is `params`' keys."""
        compiled = self._for(conn, frozenset(params) if columns else None, params=params)
        args = compiled.args(params, {})
        return self._convert(
            compiled, _execute(conn, compiled.sql, args, many=False, fresh=compiled.fresh(args))
        )

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """The rows a SELECT returns, each a named tuple of its columns with Core's type conversions."""
        return self.run(conn, params)

    def raw_rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """The rows as the driver gave them (to compare or cache; `converted` makes them `rows`)."""
        compiled = self._for(conn, None, params=params)
        args = compiled.args(params, {})
        return _execute(conn, compiled.sql, args, many=False, fresh=compiled.fresh(args))

    def converted(self, conn: Connection, raw: Sequence[Any]) -> list[Any]:
        """Rows `raw_rows` read (of a statement without IN lists of the caller's), converted."""
        return self._convert(self._for(conn, None), raw)

    @staticmethod
    def _convert(compiled: _Compiled, raw: Sequence[Any]) -> list[Any]:
        results, make = compiled.results, compiled.row
        if not any(results):
            return [make(*r) for r in raw]
        return [make(*(v if p is None else p(v) for p, v in zip(results, r, strict=True))) for r in raw]

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]], *, columns: bool = False) -> int:
        """Execute once per row in one executemany (the driver's loop); every row has the same keys. Returns
        the rows the statements changed, as the driver counts them (an INSERT … ON CONFLICT DO NOTHING that
        skipped a row counts one fewer)."""
        if not rows:
            return 0
        compiled = self._for(conn, frozenset(rows[0]) if columns else None, many=True, params=rows[0])
        memo: dict[Any, Any] = {}
        counted: list[int] = []
        _execute(conn, compiled.sql, [compiled.args(row, memo) for row in rows], many=True, counted=counted)
        return counted[0]


def _execute(
    conn: Connection,
    sql: str,
    args: Any,
    *,
    many: bool,
    counted: list[int] | None = None,
    fresh: bool = False,
) -> list[Any]:
    """What Core does around a cursor call, kept (`_cursor`). `counted`: given, the driver's row count is
    appended to it. `fresh`: planned for these values, not run as the driver's prepared statement (psycopg
    prepares a statement it has run five times)."""
    with _cursor(conn, sql, args, many) as cursor:
        if many:
            cursor.executemany(sql, args)
            if counted is not None:
                counted.append(cursor.rowcount)
            return []
        if fresh:
            cursor.execute(sql, args, prepare=False)  # psycopg's own argument
        else:
            cursor.execute(sql, args)
        return list(cursor.fetchall()) if cursor.description is not None else []


@contextmanager
def _cursor(conn: Connection, sql: str, args: Any, many: bool) -> Iterator[Any]:
    """A driver cursor for one statement, with what Core does around it: the `before_cursor_execute`
    listeners run, a driver error is raised as SQLAlchemy's, a lost connection is invalidated."""
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = dbapi_conn.cursor()
    try:
        for listener in conn.dispatch.before_cursor_execute:
            listener(conn, cursor, sql, args, None, many)
        yield cursor
    except conn.dialect.loaded_dbapi.Error as exc:
        if conn.dialect.is_disconnect(exc, dbapi_conn, cursor):
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql, args, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
        ) from exc
    finally:
        cursor.close()


def _converted_once(memo: dict[Any, Any], processor: Callable[[Any], Any], value: Any) -> Any:
    """`processor(value)`, made once per object within one call: `memo` keeps the object itself beside its
    conversion, so an id reused by another object is never taken for it."""
    key = (processor, id(value))
    hit = memo.get(key)
    if hit is None or hit[0] is not value:
        hit = memo[key] = (value, processor(value))
    return hit[1]


def _literal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"not a constant: {value!r}")
    if isinstance(value, int):
        return str(value)
    if "'" in value:
        raise ValueError(f"not a constant: {value!r}")
    return f"'{value}'"


def constants(values: Sequence[str]) -> list[Any]:
    """A constant IN list written into the SQL (`status IN ('open', …)`), which `Prepared` can compile once;
    for the application's own vocabulary only (enum values, never user input)."""
    return [literal_column(_literal(value)) for value in values]


class Copied:
    """Many new rows of one table written to PostgreSQL with COPY, with Core's type conversions.

    A batch of triggers writes a hundred incidents, escalations and twice as many events. As multi-row
    INSERTs of 32 rows they took 18 ms per hundred incidents on the server; COPY takes 9 (measured on the
    same table and indexes). Rows that need their ids back draw them from the table's own sequence first,
    in request order, as INSERT … RETURNING numbered them. Unlike an INSERT there is no ON CONFLICT: only for
    rows no unique index can refuse but by an error, which then fails the whole transaction as an INSERT's
    would."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._processors: dict[tuple[str, str], _Processor] = {}

    def _processor(self, dialect: Dialect, column: str) -> _Processor:
        key = (dialect.name, column)
        if key not in self._processors:
            impl = self.table.c[column].type.dialect_impl(dialect)
            self._processors[key] = impl.bind_processor(dialect)
        return self._processors[key]

    def write(self, conn: Connection, rows: Sequence[Mapping[str, Any]], *, ids: bool = False) -> list[int]:
        """COPY `rows` (every row with the same keys) into the table; with `ids`, give each row an id from the
        table's sequence first and return them in row order (else [])."""
        if not rows:
            return []
        columns = list(rows[0])
        missing = [
            c.name
            for c in self.table.c
            if c.default is not None and c.name not in rows[0] and not c.primary_key
        ]
        if missing:  # as `Prepared`: a Python-side default would have to run here
            raise ValueError(f"COPY into {self.table.name} needs values for {', '.join(missing)}")
        procs = [self._processor(conn.dialect, c) for c in columns]
        memo: dict[Any, Any] = {}  # a batch's rows share objects (its time stamp, one policy snapshot)
        values = [
            [
                row[c] if p is None else _converted_once(memo, p, row[c])
                for p, c in zip(procs, columns, strict=True)
            ]
            for row in rows
        ]
        new_ids: list[int] = []
        name = self.table.name
        if ids:
            sequence = f"SELECT nextval(pg_get_serial_sequence('{name}', 'id')) FROM generate_series(1, %s)"
            new_ids = sorted(int(r[0]) for r in _execute(conn, sequence, (len(rows),), many=False))
            columns = ["id", *columns]
            values = [[i, *v] for i, v in zip(new_ids, values, strict=True)]
        quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
        _copy(conn, f"COPY {conn.dialect.identifier_preparer.quote(name)} ({quoted}) FROM STDIN", values)
        return new_ids


def _copy(conn: Connection, sql: str, rows: list[list[Any]]) -> None:
    """COPY … FROM STDIN of `rows`, as `_execute` runs a statement."""
    with _cursor(conn, sql, rows, True) as cursor, cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)
