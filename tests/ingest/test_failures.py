"""A file that vanished is the surroundings, not the data, whichever library reports it."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorstore as ts

from daemon.ingest.failures import describe, is_environmental


def test_a_zarr_array_whose_folder_moved_away_is_an_environmental_failure(tmp_path: Path) -> None:
    """The preview's array under an experiment folder renamed mid-unit: tensorstore says
    NOT_FOUND with no errno, and the unit must be retried (under the folder's new name), not
    failed for good as if its raw data were broken."""
    gone = tmp_path / "run-tmp" / "preview" / "round0001.ome.zarr" / "0"
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(gone)}}
    with pytest.raises(ValueError) as caught:
        ts.open(spec, open=True).result()

    assert is_environmental(caught.value)
    assert str(gone) in describe(caught.value)
