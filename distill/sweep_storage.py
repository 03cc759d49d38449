"""Where a sweep's study lives: :func:`storage_for` turns a ``--storage`` URL into an Optuna storage (the journal in
a file, or an RDB: SQLite, PostgreSQL, MySQL), naming the fix in one line when its driver is missing or its server
cannot be reached. A leaf: it imports nothing of distill's but the error family."""

from __future__ import annotations

import time

import optuna

from distill.errors import UserError


class SweepError(UserError, ValueError):
    """A sweep option that cannot work (one line naming it)."""


def storage_for(url: str) -> optuna.storages.BaseStorage:
    """The storage a URL names: ``journal:PATH``, Optuna's journal in a file (no database server; safe on a shared
    file system where SQLite is not), else an RDB storage (SQLite, PostgreSQL, MySQL URL; ``postgresql://`` uses
    psycopg 3, the ``sweep`` extra's driver). The sweep's workers write their own heartbeat on the trials they run
    (:mod:`distill.sweep_claim`) in either, so Optuna's own heartbeat is not set.

    Raises:
        SweepError: the driver is not installed, or the server cannot be reached (naming the fix).
    """
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as e:
        fix = ('pip install "distill[sweep]" (psycopg 3)' if parsed.drivername == "postgresql+psycopg"
               else f"install the module {e.name or e} (the sweep extra brings only PostgreSQL's psycopg 3)")
        raise SweepError(f"--storage {parsed.drivername}: its driver is not installed: {fix}") from None
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(parsed.render_as_string(hide_password=False))
        except sqlalchemy.exc.DBAPIError as e:
            # workers started at once on a new database all create its tables and (PostgreSQL) enum types: the
            # losers get a duplicate row, table or type, and find them made on the next try
            if not (isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e)):
                if not isinstance(e, sqlalchemy.exc.OperationalError):
                    raise
                where = f"{parsed.host or 'localhost'}:{parsed.port or 'default port'}"
                first = str(e.orig or e).strip().splitlines()[0]
                raise SweepError(f"--storage: cannot open the database at {where} ({first}); start the server "
                                 "or fix the URL") from None
        time.sleep(0.2 * (attempt + 1))
    return optuna.storages.RDBStorage(parsed.render_as_string(hide_password=False))
