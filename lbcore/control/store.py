"""Where the model lives: SQLite in a file (the embedded default) or PostgreSQL by URL.

    store = Store("/var/lib/lbcore/control.db")            # or "postgresql://user@host/db"
    store.migrate()                                         # Alembic: upgrade to head
    with store.unit_of_work() as uow:                       # commits, or rolls back on error
        uow.add(Tenant(name="acme"))

A unit of work is one transaction in one session; leaving the block commits it,
an exception rolls it back, and ``uow.rollback()`` ends it without committing (a
dry run). ``unit_of_work(readonly=True)`` never commits (nothing added in it is
written) and opens no write transaction on SQLite. Objects read in a unit of work
stay readable after it ends (``expire_on_commit`` off): detached snapshots of what
was read, whose relationships not loaded by then cannot be loaded any more.

SQLite specifics: foreign keys on, WAL journal, a 30 s busy timeout, and a write
unit of work opens with ``BEGIN IMMEDIATE`` so two writers queue at the start
instead of failing when a reader's snapshot turns stale. PostgreSQL URLs without a
driver use psycopg 3. Statement parameters are never logged (``hide_parameters``):
secrets are ciphertext by then anyway.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TypeVar

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Store", "UnitOfWork", "database_url", "MIGRATIONS"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 0x6C62636F7265  # "lbcore": the advisory lock key migrations hold on PostgreSQL
T = TypeVar("T")


def database_url(target: str | os.PathLike[str]) -> str:
    """A SQLAlchemy URL from a file path (SQLite), ``sqlite:///...`` or a PostgreSQL URL
    (``postgresql://`` is given the psycopg 3 driver)."""
    text_target = os.fspath(target)
    if "://" not in text_target:
        return f"sqlite:///{os.path.abspath(text_target)}"
    url = make_url(text_target)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


class UnitOfWork:
    """One transaction: ``session`` plus the few calls the service makes often."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.rolled_back = False

    def add(self, obj: T) -> T:
        self.session.add(obj)
        return obj

    def get(self, model: type[T], id: Any) -> T | None:
        return self.session.get(model, id)

    def delete(self, obj: Any) -> None:
        self.session.delete(obj)

    def flush(self) -> None:
        self.session.flush()

    def execute(self, statement: Any) -> Any:
        return self.session.execute(statement)

    def scalars(self, statement: Any) -> Any:
        return self.session.scalars(statement)

    def rollback(self) -> None:
        """End the transaction without committing (the block then commits nothing)."""
        self.session.rollback()
        self.rolled_back = True


class Store:
    """The database: an engine, sessions, migrations."""

    def __init__(self, target: str | os.PathLike[str], *, echo: bool = False) -> None:
        self.url = database_url(target)
        url = make_url(self.url)
        self.dialect = url.get_backend_name()
        options: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.dialect == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 30}
        else:
            options["pool_pre_ping"] = True
        self.engine: Engine = create_engine(self.url, **options)
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine)
        self._write = self.engine.execution_options(lbcore_begin="IMMEDIATE")
        self._sessions = sessionmaker(expire_on_commit=False)

    def __repr__(self) -> str:
        return f"<Store {make_url(self.url).render_as_string(hide_password=True)}>"

    # -- schema ----------------------------------------------------------------------------------

    def migrate(self) -> str:
        """Apply every Alembic migration not applied yet; returns the head revision."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                # Several control-plane processes may start at once: one migrates, the
                # others wait here and then find the schema at head.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        revision = self.schema_revision()
        assert revision is not None
        return revision

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None: never migrated)."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

    # -- transactions ----------------------------------------------------------------------------

    @contextmanager
    def unit_of_work(self, *, readonly: bool = False) -> Iterator[UnitOfWork]:
        """A transaction: commit on leaving the block, roll back on an exception."""
        session = self._sessions(bind=self.engine if readonly else self._write)
        uow = UnitOfWork(session)
        try:
            yield uow
            if not uow.rolled_back:
                if readonly:
                    session.expunge_all()  # detached as read (a rollback would expire them)
                    session.rollback()
                else:
                    session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by pysqlite
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("lbcore_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")
