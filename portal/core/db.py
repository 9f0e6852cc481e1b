"""Engine, one session per app context, and migrations."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from flask import Flask, current_app, g, has_app_context, has_request_context, request
from sqlalchemy import (
    Engine,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from portal.core.config import MIN_SECRET_KEY_LENGTH, ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, echo: bool = False) -> Engine:
    # Errors and echoed statements never show their parameters: they hold password hashes,
    # token hashes and people's addresses, and error messages reach the logs.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
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


#: ``Session.info`` key (and ``app.extensions`` key) of the key that seals the evidence chain
#: (``portal.domain.audit``): every session of the app carries it, so what it writes is sealed
#: as it commits.
AUDIT_KEY = "portal.audit_key"


def audit_key(secret_key: str | bytes, configured: Any = None) -> bytes:
    """The evidence chain's key: ``AUDIT_KEY`` when set, else derived from ``secret_key`` (one
    key per purpose: the chain's seals say nothing about the secret key, nor it about them)."""
    if configured is not None and configured != "":
        text = str(configured)  # the environment's JSON parsing may have made a number of it
        if len(text) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(
                f"PORTAL_AUDIT_KEY is too short: use at least {MIN_SECRET_KEY_LENGTH} random "
                "characters, or unset it to derive the key from the secret key."
            )
        return text.encode()
    secret = secret_key if isinstance(secret_key, bytes) else secret_key.encode()
    return hmac.new(secret, b"portal audit chain", hashlib.sha256).digest()


def audit_keys(config: Mapping[str, Any]) -> list[bytes]:
    """Every key evidence may have been sealed with, the current one first: ``AUDIT_KEY`` (or
    the one derived from ``SECRET_KEY``), then each of ``AUDIT_KEY_FALLBACKS``, then those
    derived from ``SECRET_KEY`` (when ``AUDIT_KEY`` replaced it) and from each of
    ``SECRET_KEY_FALLBACKS``."""
    keys = [audit_key(config["SECRET_KEY"], config.get("AUDIT_KEY"))]
    old_keys = config.get("AUDIT_KEY_FALLBACKS") or []
    keys.extend(
        audit_key("", old) for old in ([old_keys] if isinstance(old_keys, str) else old_keys)
    )
    if config.get("AUDIT_KEY") not in (None, ""):
        keys.append(audit_key(config["SECRET_KEY"]))
    keys.extend(audit_key(old) for old in config.get("SECRET_KEY_FALLBACKS") or ())
    return keys


def sealing_key(db_session: Session) -> bytes | None:
    """The key that seals what ``db_session`` writes: its app's, else the current app's (a
    session made outside the app's factories, inside its context); None outside any app."""
    key: bytes | None = db_session.info.get(AUDIT_KEY)
    if key is None and has_app_context():
        key = current_app.extensions.get(AUDIT_KEY)
    return key


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"], echo=bool(app.config["DATABASE_ECHO"]))
    app.extensions["portal.engine"] = engine
    key = audit_key(app.config["SECRET_KEY"], app.config.get("AUDIT_KEY"))
    app.extensions[AUDIT_KEY] = key
    app.extensions["portal.sessionmaker"] = sessionmaker(
        engine.execution_options(**{WRITE: True}), expire_on_commit=False, info={AUDIT_KEY: key}
    )
    app.extensions["portal.reader"] = sessionmaker(
        engine, expire_on_commit=False, info={AUDIT_KEY: key}
    )
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


def reading_session(app: Flask) -> Session:
    """A session apart from the app context's whose transactions begin without SQLite's write
    lock: for a long read (``portal audit verify``) that must not hold up the writers."""
    factory: sessionmaker[Session] = app.extensions["portal.reader"]
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
    """Alembic's configuration for ``engine``; inside an app's context it carries the app's
    audit key too, for the migrations that chain evidence (0016)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    if has_app_context():
        config.attributes[AUDIT_KEY] = current_app.extensions.get(AUDIT_KEY)
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply pending migrations (inside the app's context, so that evidence chained by them is
    sealed with its key)."""
    command.upgrade(alembic_config(engine), revision)


def pending_migrations(engine: Engine) -> bool:
    """Whether the database lacks migrations this code has. A schema newer than the code (one
    it does not know: a later release upgraded it) is not pending: migrations are additive, so
    an older process still works on it during a rolling upgrade."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current == set(script.get_heads()):
        return False
    known = {revision.revision for revision in script.walk_revisions()}
    return not current or current <= known


# --- backup and restore (SQLite) -----------------------------------------------------------------


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


def sqlite_path(engine: Engine) -> Path:
    """The database file, or BackupError for another kind of database."""
    if engine.dialect.name != "sqlite" or not _sqlite_file(str(engine.url)):
        raise BackupError(
            f"`portal backup` and `portal restore` are for the embedded SQLite database; this "
            f"portal uses {engine.dialect.name}: use its own tools (PostgreSQL: pg_dump and "
            "pg_restore, or continuous archiving; see README, Operations)."
        )
    return Path(str(engine.url.database))


def backup(engine: Engine, target: Path) -> int:
    """A consistent copy of the live database in ``target`` (one file), taken while the portal
    runs: SQLite's online backup reads one snapshot, and writers are not stopped. Returns its
    size in bytes. ``target`` appears only once whole and checked."""
    import sqlite3

    source = sqlite_path(engine)
    partial = target.with_name(target.name + ".partial")
    live = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    copy = sqlite3.connect(partial)
    try:
        live.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # the copy is one file, no -wal beside it
        problem = _unusable(copy)
    finally:
        copy.close()
        live.close()
    if problem:
        partial.unlink(missing_ok=True)
        raise BackupError(f"the copy is not usable ({problem}); nothing was written")
    partial.replace(target)
    return target.stat().st_size


def restore(engine: Engine, source: Path) -> str:
    """Replace the live database's contents with the backup ``source`` (checked first), then
    apply the migrations it lacks. Returns the backup's schema revision."""
    import sqlite3

    target = sqlite_path(engine)
    if not source.is_file():
        raise BackupError(f"{source} is not a file")
    try:
        backup_db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{source} cannot be opened: {exc}") from exc
    try:
        problem = _unusable(backup_db)
        if problem:
            raise BackupError(f"{source} is not a portal backup: {problem}")
        revision = backup_db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        known = _known_revisions()
        if revision not in known:
            raise BackupError(
                f"{source} was made by a newer portal (schema {revision}); restore it with that "
                "version"
            )
        live = sqlite3.connect(target, timeout=30)
        try:
            backup_db.backup(live)  # under the write lock: other connections see all or none
        finally:
            live.close()
    finally:
        backup_db.close()
    engine.dispose()  # connections opened before hold the old pages in their caches
    upgrade(engine)
    return str(revision)


def _unusable(connection: Any) -> str:
    """Why ``connection``'s database is not a portal database, or ``""``."""
    import sqlite3

    try:
        integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if integrity != "ok":
        return f"integrity check: {integrity}"
    if not {"alembic_version", "partners", "customers"} <= tables:
        return "it has no portal tables"
    return ""


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return {revision.revision for revision in ScriptDirectory.from_config(config).walk_revisions()}
