"""The speed layer's SQL: statements compiled once and run as the driver's SQL, and rows
written at once outside the unit of work.

Fenced here because each trick leans on SQLAlchemy internals (``SQLCompiler`` parameter
processing, result processors by driver type code, ``make_transient_to_detached``): the
behaviour they rely on is pinned by ``tests/test_library_behaviour.py``, and ``pyproject.toml``
bounds SQLAlchemy from above. Each function and class says why it is here and what it saves.
The bookkeeping they need (objects in the session kept as the database has them) is done here
too, so that domain code calls them as it would call the ORM.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any, Final

from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Select,
    Update,
    bindparam,
    insert,
    inspect,
    update,
)
from sqlalchemy.orm import MANYTOONE, Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.compiler import SQLCompiler

#: ``update_now``'s value for "one more than the database has" (a generation counter).
INCREMENT: Final = object()


def insert_now(session: Session, *objects: Any) -> None:
    """Write new objects at once, one INSERT each, in this order; then they are in ``session``
    as if loaded (later changes to them are flushed as updates).

    For the rows written by every customer and invitation creation: the unit of work's
    bookkeeping for a new object costs several times its INSERT, and on SQLite all of it runs
    while the transaction holds the database's write lock, which every writer waits for. So the
    rows are made first (Python column defaults filled in, a many-to-one link giving its foreign
    key), and only then written, each by an INSERT compiled once (``CompiledWrite``). Links set
    between the objects (``Customer(partner=...)``) are then as if loaded: following them needs
    no query, and no flush has them to process.

    Measured with ``bench/delivery_bench.py`` (creation through ``portal serve``, SQLite, 2
    cores), together with the events written at once (``events.record(write_now=True)``): the
    server's CPU per customer with its invitation was 14.8 ms with them and 18.7 ms with
    ``session.add`` and a flush instead (medians of three runs each): about 20 % less.

    Refuses (ValueError) what it would get wrong: a column default that is SQL (its value is not
    read back) and a mapper with ``before_insert`` listeners (they would not run). Runs the
    ``after_insert`` listeners, once the objects are in ``session``.
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
    # Then their mappers' after_insert listeners, as a flush runs them (with the object's
    # state, which the listener's wrapper turns into the object): the evidence chain notes its
    # rows so (``portal.domain.audit``).
    for obj, (mapper, _values) in zip(objects, rows, strict=True):
        if mapper.dispatch.after_insert:
            mapper.dispatch.after_insert(mapper, connection, inspect(obj))


#: ``insert_now``'s statements, by table and the columns written.
_inserts: dict[tuple[Any, tuple[str, ...]], CompiledWrite] = {}


def _row_of(obj: Any) -> tuple[Any, dict[str, Any]]:
    """The mapper of a new object, and the values of its row (by column key) as it will be
    written; the object gets its defaults and linked foreign keys set as it goes."""
    state = inspect(obj)
    if not state.transient:
        raise ValueError(f"{obj!r} is already in a session")
    mapper = state.mapper
    if mapper.dispatch.before_insert:
        raise ValueError(f"{mapper.class_.__name__} has before_insert listeners: use the ORM")
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
            if default is not None and default.is_clause_element:
                raise ValueError(f"{prop.key} has a SQL default: set it, or use the ORM")
            if default is not None:
                setattr(obj, prop.key, default.arg(None) if default.is_callable else default.arg)
            elif column.primary_key or column.server_default is not None:
                continue  # the database's: read back, or loaded when first used
            else:
                setattr(obj, prop.key, None)  # as written, so nothing needs loading
        values[column.key] = state.dict[prop.key]
    return mapper, values


def update_now(session: Session, obj: Any, **values: Any) -> None:
    """UPDATE ``obj``'s row at once with ``values`` (``INCREMENT`` adds one to what the
    database has) by a statement compiled once; ``obj`` then holds what the database has.

    For the rows every new invitation changes (the customer's credentials and link expiry), for
    the reason ``insert_now`` gives: a flush of a changed object costs several times its UPDATE.
    """
    state = inspect(obj)
    mapper = state.mapper
    keys = tuple(sorted(values))
    increments = tuple(key for key in keys if values[key] is INCREMENT)
    statement = _updates.get((mapper, keys, increments))
    if statement is None:
        columns = {key: mapper.get_property(key).columns[0] for key in keys}
        statement = _updates[(mapper, keys, increments)] = CompiledWrite(
            update(mapper.local_table)
            .where(*(column == bindparam(f"pk_{column.key}") for column in mapper.primary_key))
            .values(
                {
                    columns[key].key: columns[key] + 1 if key in increments else bindparam(key)
                    for key in keys
                }
            )
        )
    written = {key: value for key, value in values.items() if value is not INCREMENT}
    keyed = {f"pk_{c.key}": v for c, v in zip(mapper.primary_key, state.identity, strict=True)}
    statement.run(session.connection(), {**written, **keyed})
    for key, value in written.items():
        set_committed_value(obj, key, value)
    if increments:
        session.expire(obj, list(increments))  # read again when used, as the database counted


#: ``update_now``'s statements, by mapper, the attributes set and those incremented.
_updates: dict[tuple[Any, tuple[str, ...], tuple[str, ...]], CompiledWrite] = {}


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
    times the statement itself; here it is a few dictionary look-ups. Its measured gain is
    ``insert_now``'s, whose statements it runs.
    """

    def __init__(self, statement: Insert | Update, returning: Sequence[Any] = ()) -> None:
        self.statement = statement
        #: Columns whose new values are read back (``INSERT ... RETURNING``; on SQLite the row
        #: id, which needs no RETURNING support from an older SQLite).
        self.returning = list(returning)
        self._prepared: dict[tuple[str, str], tuple[SQLCompiler, dict[str, Any]]] = {}

    def run_for(
        self, session: Session, entity: type[Any], key: Any, changes: Sequence[str], **params: Any
    ) -> None:
        """Run in ``session``'s transaction, as an UPDATE of the ``entity`` row whose primary key
        is ``key`` that changes the attributes ``changes``: if that row's object is in
        ``session``, they are read again when next used (as the database has them now)."""
        self.run(session.connection(), params)
        loaded = session.identity_map.get(identity_key(entity, key))
        if loaded is not None:
            session.expire(loaded, list(changes))

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
    page's session, an invitation link): building, compiling and the ORM's objects cost those
    several times what the query does. Everything else uses the ORM. Measured in-process
    (``bench/tricks_bench.py``, CPU per request with the same statements run through the ORM):
    the status poll about 42 % cheaper, the agreement page 30 %, the landing page 28 %.
    """

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self.statement = statement
        #: A row's keys: its columns' names or labels, each once (label what would repeat).
        self.names = [column.key or "" for column in statement.selected_columns]
        unnamed = [n for n in self.names if not n or n.startswith("anon_")]
        if unnamed or len(set(self.names)) != len(self.names):
            raise ValueError(f"label every column once: {self.names}")
        #: Per database kind and driver (their parameter styles and type codes differ).
        self._compiled_by_kind: dict[tuple[str, str], SQLCompiler] = {}
        self._processors: dict[tuple[str, str], list[Any]] = {}

    def first(self, session: Session, **params: Any) -> dict[str, Any] | None:
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

    def first_on(self, engine: Engine, **params: Any) -> dict[str, Any] | None:
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
    ) -> dict[str, Any] | None:
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
        return {
            name: value if convert is None or value is None else convert(value)
            for name, convert, value in zip(self.names, processors, row, strict=True)
        }
