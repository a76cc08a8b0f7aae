"""Alembic environment: the target metadata is ``lbcore.control.model.Base``.

``Store.migrate()`` passes its open connection in ``config.attributes["connection"]``;
the alembic command line builds one from ``sqlalchemy.url`` instead. SQLite needs
batch mode to alter tables (it copies the table), so it is on for every backend.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from lbcore.control.model import Base

config = context.config
target_metadata = Base.metadata


def _configure(**options: object) -> None:
    context.configure(target_metadata=target_metadata, render_as_batch=True, compare_type=True, **options)


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(config.get_section(config.config_ini_section) or {}, prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
