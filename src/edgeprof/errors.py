"""The small exception tree of edgeprof.

``UserError`` is anything the user can fix (bad spec, missing image, engine down, unknown
run id): the CLI prints its message as one sentence, without a traceback, and exits 2.
"""

from __future__ import annotations


class EdgeprofError(Exception):
    """Base of every edgeprof error."""


class UserError(EdgeprofError):
    """An error the user caused and can fix; printed without traceback, exit code 2."""

    exit_code = 2


class SpecError(UserError):
    """The profile spec cannot be loaded or is invalid."""


class EngineError(UserError):
    """The container engine is unreachable or refused an operation."""


class StoreError(UserError):
    """The database URL is wrong or the database cannot be opened or written."""


class StoreUnavailable(StoreError):
    """The connection to the database server was lost (or cannot be made again): the
    statement did not happen; it may be retried once the store reconnects. ``xid`` is set
    when the loss came while committing: that transaction may or may not have committed
    (see :meth:`edgeprof.store.sql.SQLStore.committed`)."""

    def __init__(self, message: str, xid: int | None = None) -> None:
        super().__init__(message)
        self.xid = xid


class CollectorUnavailable(EdgeprofError):
    """A collector cannot work on this machine; the reason is recorded and the run goes on."""
