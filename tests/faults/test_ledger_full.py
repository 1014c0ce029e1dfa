"""The ledger on a disk that runs full: a failed commit is reported and leaves it usable.

SQLite fails the COMMIT itself when the write-ahead log cannot grow. The daemon must get an
error that names the ledger and means ENOSPC (so it is retried like any full disk), and the
very same connection must work again once space returns: a transaction left open would make
every later write fail with "cannot start a transaction within a transaction".
"""

from __future__ import annotations

import errno

import pytest
from support.faults import fill_disk, small_disk

from daemon.ingest.failures import describe, is_environmental
from daemon.ingest.ledger import Ledger, LedgerError, unit_id


def test_a_commit_on_a_full_disk_fails_naming_the_ledger_and_the_ledger_recovers(tmp_path):
    with small_disk(tmp_path / "disk", 1 << 20) as disk:
        ledger = Ledger(disk / "ledger.sqlite")
        ledger.observe(0, 0, "sim_r0001_tile0000_1", "f0")
        filler = fill_disk(disk)
        with pytest.raises(LedgerError) as raised:
            for tile in range(1, 200):  # rows big enough that the log must grow
                ledger.observe(tile, 0, f"sim_r0001_tile{tile:04d}_1", "f" * 20_000)
        assert raised.value.errno == errno.ENOSPC
        assert describe(raised.value).startswith(f"{disk / 'ledger.sqlite'}: ")
        assert is_environmental(raised.value)

        filler.unlink()
        assert ledger.observe(500, 0, "sim_r0001_tile0500_1", "f500")
        assert ledger.get(unit_id(500, 0)) is not None
        assert ledger.get(unit_id(0, 0)) is not None  # nothing committed before was lost
        ledger.close()
        reopened = Ledger(disk / "ledger.sqlite")
        assert {unit_id(0, 0), unit_id(500, 0)} <= set(reopened.pending())
        reopened.close()
