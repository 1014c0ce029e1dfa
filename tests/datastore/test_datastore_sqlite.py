"""The daemon's SQLite files (ledger, quality log) as `daemon.datastore.sqlite` opens them."""

import ctypes

from daemon.datastore.sqlite import Database


def sqlite_memory_used() -> int:
    """Bytes the SQLite library in this process holds (its own count: page caches, schemas,
    statements), read from the library the sqlite3 module is linked with."""
    import _sqlite3

    library = ctypes.CDLL(_sqlite3.__file__)  # its symbols resolve to the linked SQLite
    library.sqlite3_memory_used.restype = ctypes.c_int64
    return int(library.sqlite3_memory_used())


def test_a_writer_keeps_a_bounded_page_cache_however_large_its_file(tmp_path):
    """A run's ledger and quality log grow by a row per unit; SQLite's default page cache
    (2 MB per connection) kept each file's pages in the daemon's memory as it grew, a
    resident growth with the run's length. The pages are in the OS's cache anyway."""
    baseline = sqlite_memory_used()
    db = Database.open_writer(
        tmp_path / "big.sqlite", "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT);", "NORMAL"
    )
    opened = sqlite_memory_used()
    assert opened > baseline, "the sqlite3 module's own SQLite is not the one measured"
    with db.transaction() as connection:
        connection.executemany(
            "INSERT INTO t (k, v) VALUES (?, ?)", ((k, f"{k:0200d}") for k in range(20_000))
        )
    assert len(db.query("SELECT k, v FROM t")) == 20_000  # every page read once
    grown = sqlite_memory_used() - opened
    db.close()
    assert (tmp_path / "big.sqlite").stat().st_size > 4_000_000
    assert grown < 1_000_000, f"{grown} bytes kept by one connection"
