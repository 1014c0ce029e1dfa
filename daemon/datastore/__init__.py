"""The qi2lab DataStore: reads and writes the on-disk layout of the spec."""

from daemon.datastore.arrays import REFERENCE_CODEC, ArrayCodec, make_context
from daemon.datastore.jsonio import atomic_write, read_json, write_json_atomic
from daemon.datastore.layout import Entity, LayoutError
from daemon.datastore.store import (
    DataStore,
    MissingValueError,
    StagedEntity,
    UnknownEntityError,
)

__all__ = [
    "REFERENCE_CODEC",
    "ArrayCodec",
    "DataStore",
    "Entity",
    "LayoutError",
    "MissingValueError",
    "StagedEntity",
    "UnknownEntityError",
    "atomic_write",
    "make_context",
    "read_json",
    "write_json_atomic",
]
