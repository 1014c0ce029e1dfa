"""Functions of arrays: no I/O, no imports from the rest of the daemon."""
