"""The call store: records of every large-model call, behind any SQLAlchemy URL.

* :mod:`.records` -- :class:`CallRecord`, one row; :data:`StoreInputs`, how much input to keep.
* :mod:`.sql` -- :class:`CallStore` (write, read, count, stats, export) and :func:`open_store`.
* :mod:`.schema` -- the tables, the schema version, migrations, the lock that makes a first
  open safe from many processes at once.
* :mod:`.spill` -- the journal of records the database could not take yet.
* :mod:`.recorder` -- :class:`CallRecorder`, the one recorder of calls observed by the
  LangChain and LlamaIndex handlers.
"""

from __future__ import annotations

from .recorder import CallRecorder, describe_error
from .records import CallRecord, StoreInputs
from .schema import SCHEMA_VERSION, create_tables, schema_lock
from .sql import CallStore, open_store

__all__ = [
    "SCHEMA_VERSION",
    "CallRecord",
    "CallRecorder",
    "CallStore",
    "StoreInputs",
    "create_tables",
    "describe_error",
    "open_store",
    "schema_lock",
]
