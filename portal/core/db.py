"""Engine, one session per app context, and migrations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import (
    Engine,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, echo: bool = False) -> Engine:
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("postgresql"):
        # Fail over cleanly after a server restart instead of handing out dead connections.
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10)
    elif url.startswith("sqlite") and _sqlite_file(url):
        # Room for every thread of a served worker (``SERVE_THREADS``, 8 by default): a
        # connection beyond the pool's size is closed when returned, and the next one opened
        # runs its pragmas again and starts with an empty page cache.
        kwargs.update(pool_size=32, max_overflow=16)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "commit", _sqlite_end)
        event.listen(engine, "rollback", _sqlite_end)
    return engine


def _sqlite_file(url: str) -> bool:
    database = make_url(url).database
    return (
        bool(database) and database != ":memory:" and not str(database).startswith("file::memory:")
    )


#: Execution option for transactions that will write: on SQLite they take the write lock at
#: BEGIN, so a transaction that reads first cannot fail with "database is locked" when it writes.
WRITE = "portal_write"
#: Execution option for a transaction that may only read (a ``reads_first`` view's first): the
#: database refuses a write in it.
READ_ONLY = "portal_read_only"


def _sqlite_begin(connection: Any) -> None:
    # Writers take the write lock at once; readers begin deferred, so they never hold it while
    # they work (a reader that writes after all takes it then, or gets a clean "locked" error).
    options = connection.get_execution_options()
    connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE, False) else "BEGIN")
    if options.get(READ_ONLY, False):  # a setting, like the pragmas at connect: the driver's
        connection.connection.driver_connection.execute("PRAGMA query_only = ON")


def _sqlite_end(connection: Any) -> None:
    # query_only is the connection's, not the transaction's: off again before the pool has it.
    if connection.get_execution_options().get(READ_ONLY, False):
        connection.connection.driver_connection.execute("PRAGMA query_only = OFF")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling defers BEGIN, so a SAVEPOINT would open (and its
    # RELEASE commit) the outer transaction: let SQLAlchemy emit BEGIN itself instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # SQLite leaves foreign keys off unless asked; WAL lets readers and one writer overlap.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"], echo=bool(app.config["DATABASE_ECHO"]))
    app.extensions["portal.engine"] = engine
    app.extensions["portal.sessionmaker"] = sessionmaker(
        engine.execution_options(**{WRITE: True}), expire_on_commit=False
    )
    app.extensions["portal.reader"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)


def engine() -> Engine:
    result: Engine = current_app.extensions["portal.engine"]
    return result


def session() -> Session:
    """The session of this app context. Domain code flushes; the edge commits.

    GET requests get a session that does not take SQLite's write lock up front (a page that is
    only read must not queue behind writers); everything else may write. A view marked
    ``reads_first`` begins without the lock too, and takes it with its next transaction.
    """
    if "db_session" not in g:
        reading = has_request_context() and request.method in ("GET", "HEAD")
        factory = current_app.extensions["portal.reader" if reading else "portal.sessionmaker"]
        g.db_session = factory()
        if not reading and has_request_context() and _reads_first():
            # PostgreSQL: SET TRANSACTION READ ONLY, undone when the pool takes it back.
            g.db_session.connection(
                execution_options={WRITE: False, READ_ONLY: True, "postgresql_readonly": True}
            )
    result: Session = g.db_session
    return result


_READS_FIRST = "portal_reads_first"
View = TypeVar("View", bound=Callable[..., Any])


def reads_first(view: View) -> View:
    """Mark a view that reads, then commits (writing nothing yet), then writes: on SQLite its
    first transaction does not hold the write lock, so other writers need not wait while it
    reads and does what needs no database (a password's slow hash). It must not write before
    that commit (a transaction begun without the lock may find it taken, or its reads stale,
    when it tries to write), and cannot: that first transaction is read-only, so a write in it
    fails at once (on SQLite and PostgreSQL alike) instead of now and then under load."""
    setattr(view, _READS_FIRST, True)
    return view


def _reads_first() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, _READS_FIRST, False))


def new_session(app: Flask) -> Session:
    """A session apart from the app context's, that may write: for work in a thread of its own."""
    factory: sessionmaker[Session] = app.extensions["portal.sessionmaker"]
    return factory()


def commit_if_possible(log_as: str) -> None:
    """Commit what a GET request noted by the way (a first opening, a session touch). If the
    database is busy, drop it: the page is still served and nothing half-written remains."""
    if "db_session" not in g or not session().in_transaction():
        return  # nothing noted, nothing to end
    try:
        session().commit()
    except OperationalError as exc:
        session().rollback()
        current_app.logger.info("%s not recorded: %s", log_as, exc)


def end_session() -> None:
    """Close the app context's session (what it did not commit is dropped); the next
    ``session()`` is a new one."""
    db_session: Session | None = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


def _close_session(_exc: BaseException | None) -> None:
    end_session()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply pending migrations."""
    command.upgrade(alembic_config(engine), revision)


def pending_migrations(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current != set(script.get_heads())
