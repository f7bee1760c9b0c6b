"""voiceplane.store (see DESIGN.md, Layers): the database.

- :mod:`voiceplane.store.models`: the tables (SQLAlchemy 2 typed declarative models).
- :mod:`voiceplane.store.db`: engines (SQLite pragmas, PostgreSQL driver), sessions, and
  :func:`~voiceplane.store.db.migrate` with the Alembic migrations shipped in ``migrations/``.
- :mod:`voiceplane.store.repository`: keyword-only queries and changes, and
  :func:`~voiceplane.store.repository.call_record`, the JSON call record of the contract.
"""
