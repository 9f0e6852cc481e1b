"""The speed layer's SQL: statements compiled once and run as the driver's SQL, and new rows
written at once outside the unit of work.

Fenced here because each trick leans on SQLAlchemy internals (``SQLCompiler`` parameter
processing, result processors by driver type code, ``make_transient_to_detached``): the
behaviour they rely on is pinned by ``tests/test_library_behaviour.py``, and ``pyproject.toml``
bounds SQLAlchemy from above. Each class says why it is here.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Select, Update, bindparam, insert, inspect
from sqlalchemy.orm import MANYTOONE, Session, make_transient_to_detached
from sqlalchemy.sql.compiler import SQLCompiler


def insert_now(session: Session, *objects: Any) -> None:
    """Write new objects at once, one INSERT each, in this order; then they are in ``session``
    as if loaded (later changes to them are flushed as updates).

    For the rows written by every customer and invitation creation: the unit of work's
    bookkeeping for a new object costs several times its INSERT, and on SQLite all of it runs
    while the transaction holds the database's write lock, which every writer waits for. So the
    rows are made first (Python column defaults filled in, a many-to-one link giving its foreign
    key), and only then written, each by an INSERT compiled once (``CompiledWrite``).
    """
    rows = [_row_of(obj) for obj in objects]
    connection = session.connection()  # on SQLite, the write lock is held from here
    for obj, (mapper, values) in zip(objects, rows, strict=True):
        table = mapper.local_table
        missing_key = [column for column in mapper.primary_key if values.get(column.key) is None]
        statement = _inserts.get((table, tuple(values)))
        if statement is None:
            statement = _inserts[(table, tuple(values))] = CompiledWrite(
                insert(table).values({key: bindparam(key) for key in values}),
                returning=missing_key,
            )
        returned = statement.run(connection, values)
        for column, value in zip(missing_key, returned or (), strict=False):
            setattr(obj, mapper.get_property_by_column(column).key, value)
    # All first, then all in: adding one cascades to the others it links to, which must not
    # arrive as new.
    for obj in objects:
        make_transient_to_detached(obj)
    for obj in objects:
        session.add(obj)


#: ``insert_now``'s statements, by table and the columns written.
_inserts: dict[tuple[Any, tuple[str, ...]], CompiledWrite] = {}


def _row_of(obj: Any) -> tuple[Any, dict[str, Any]]:
    """The mapper of a new object, and the values of its row (by column key) as it will be
    written; the object gets its defaults and linked foreign keys set as it goes."""
    state = inspect(obj)
    if not state.transient:
        raise ValueError(f"{obj!r} is already in a session")
    mapper = state.mapper
    for relationship in mapper.relationships:
        linked = state.dict.get(relationship.key)
        if relationship.direction is MANYTOONE and linked is not None:
            for local, remote in relationship.local_remote_pairs:
                key = mapper.get_property_by_column(local).key
                if state.dict.get(key) is None:
                    remote_key = inspect(linked).mapper.get_property_by_column(remote).key
                    setattr(obj, key, getattr(linked, remote_key))
    values: dict[str, Any] = {}
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if prop.key not in state.dict:
            default: Any = column.default
            if default is not None:
                setattr(obj, prop.key, default.arg(None) if default.is_callable else default.arg)
            elif column.primary_key or column.server_default is not None:
                continue  # the database's: read back, or loaded when first used
            else:
                setattr(obj, prop.key, None)  # as written, so nothing needs loading
        values[column.key] = state.dict[prop.key]
    return mapper, values


def _driver_arguments(compiled: SQLCompiler, values: MutableMapping[str, Any]) -> Any:
    """Bound values as the driver takes them: in order for a positional parameter style."""
    if compiled.positional:
        return tuple(values[name] for name in compiled.positiontup or ())
    return values


class CompiledWrite:
    """An INSERT or UPDATE compiled once per kind of database and run at once as the driver's
    SQL, its values converted by their columns' own types.

    For the statements of every customer and invitation creation: on SQLite the transaction
    holds the database's write lock from its first statement to its commit, and everyone else's
    writes wait for it. Through the ORM or Core, the Python around each statement costs several
    times the statement itself; here it is a few dictionary look-ups.
    """

    def __init__(self, statement: Insert | Update, returning: Sequence[Any] = ()) -> None:
        self.statement = statement
        #: Columns whose new values are read back (``INSERT ... RETURNING``; on SQLite the row
        #: id, which needs no RETURNING support from an older SQLite).
        self.returning = list(returning)
        self._prepared: dict[tuple[str, str], tuple[SQLCompiler, dict[str, Any]]] = {}

    def run(self, connection: Connection, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """Run with ``params`` in ``connection``'s transaction: the values of ``returning``
        (None without)."""
        dialect = connection.dialect
        kind = (dialect.name, dialect.driver)
        prepared = self._prepared.get(kind)
        if prepared is None:
            prepared = self._prepared[kind] = self._prepare(dialect)
        compiled, processors = prepared
        values = compiled.construct_params(params)
        for name, process in processors.items():
            values[name] = process(values[name])
        arguments = _driver_arguments(compiled, values)
        # The driver's own SQL, through the connection: its events and echo see it.
        result = connection.exec_driver_sql(compiled.string, arguments)
        if not self.returning:
            return None
        if dialect.name == "sqlite":
            return (result.lastrowid,)
        row = result.fetchone()
        return tuple(row) if row is not None else None

    def _prepare(self, dialect: Any) -> tuple[SQLCompiler, dict[str, Any]]:
        statement: Any = self.statement
        if self.returning and dialect.name != "sqlite":
            statement = statement.returning(*self.returning)
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # noqa: S101 - DML compiles to SQL
        processors = {}
        for bind, name in compiled.bind_names.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors[name] = process
        return compiled, processors


class CompiledRead:
    """A SELECT compiled once per kind of database and run on a pooled DB-API connection, its
    values converted by the columns' own types (what the ORM would give).

    For the few look-ups made on nearly every request (a partner's ``isSigned`` poll, a customer
    page's session): building, compiling and the ORM's objects cost those several times what
    the query does. Everything else uses the ORM.
    """

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self.statement = statement
        #: Per database kind and driver (their parameter styles and type codes differ).
        self._compiled_by_kind: dict[tuple[str, str], SQLCompiler] = {}
        self._processors: dict[tuple[str, str], list[Any]] = {}

    def first(self, session: Session, **params: Any) -> list[Any] | None:
        """The first row for ``params``: in ``session``'s transaction when it has one (as the
        driver's SQL through its connection, which the engine's events and echo see), else on
        a connection of its own from the pool (``session`` then stays without one)."""
        engine = session.get_bind().engine
        if not session.in_transaction():
            return self.first_on(engine, **params)
        compiled, arguments = self._compiled(engine.dialect, params)
        result = session.connection().exec_driver_sql(compiled.string, arguments)
        description = result.cursor.description
        row = result.fetchone()
        result.close()
        return self._converted(engine.dialect, description, row)

    def first_on(self, engine: Engine, **params: Any) -> list[Any] | None:
        """The first row for ``params``, read on a connection of its own from ``engine``'s pool."""
        compiled, arguments = self._compiled(engine.dialect, params)
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(compiled.string, arguments)
                description = cursor.description
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            connection.close()  # back to the pool, which ends the read
        return self._converted(engine.dialect, description, row)

    def _compiled(self, dialect: Any, params: dict[str, Any]) -> tuple[SQLCompiler, Any]:
        kind = (dialect.name, dialect.driver)
        compiled = self._compiled_by_kind.get(kind)
        if compiled is None:
            made = self.statement.compile(dialect=dialect)
            assert isinstance(made, SQLCompiler)  # noqa: S101 - a SELECT compiles to SQL
            compiled = self._compiled_by_kind[kind] = made
        return compiled, _driver_arguments(compiled, compiled.construct_params(params))

    def _converted(
        self, dialect: Any, description: Any, row: Sequence[Any] | None
    ) -> list[Any] | None:
        kind = (dialect.name, dialect.driver)
        processors = self._processors.get(kind)
        if processors is None:
            # The driver's type codes (in the description) pick some types' conversions.
            processors = self._processors[kind] = [
                column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                for column, described in zip(
                    self.statement.selected_columns, description, strict=True
                )
            ]
        if row is None:
            return None
        return [
            value if convert is None or value is None else convert(value)
            for convert, value in zip(processors, row, strict=True)
        ]
