"""Alembic migrations of the control-plane database (``Store.migrate()`` applies them).

``env.py`` runs on the connection the store hands over (or, from the alembic
command line, on ``sqlalchemy.url``); ``versions/`` holds one file per schema step.
A new step: ``alembic -c lbcore/control/migrations/alembic.ini revision --autogenerate -m "..."``
against a database at head, then read and trim what it wrote.
"""
