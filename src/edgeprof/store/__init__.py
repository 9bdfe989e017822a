"""Storage of runs, targets, series, samples, events and logs, picked by URL."""

from edgeprof.store.sql import BatchWriter, SQLStore, open_store

DEFAULT_DB = "sqlite:///./edgeprof.db"

__all__ = ["DEFAULT_DB", "BatchWriter", "SQLStore", "open_store"]
