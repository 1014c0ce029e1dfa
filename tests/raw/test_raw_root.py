"""Finding the experiments under a data root (`watch --root`)."""

from __future__ import annotations

from pathlib import Path

from daemon.raw.root import find_experiments


def test_an_experiment_is_a_matched_folder_with_raw_data_and_nothing_inside_raw_data(
    tmp_path: Path,
) -> None:
    for name in ("run b", "run-a", "empty"):
        (tmp_path / name).mkdir()
    for name in ("run b", "run-a"):
        (tmp_path / name / "raw_data" / "nested" / "raw_data").mkdir(parents=True)
    (tmp_path / "loose-file").write_text("x")
    assert find_experiments(tmp_path) == [tmp_path / "run b", tmp_path / "run-a"]
    assert find_experiments(tmp_path, "run-*") == [tmp_path / "run-a"]
    assert find_experiments(tmp_path, "*/raw_data/*") == []  # never inside raw data
    (tmp_path / "empty" / "raw_data").mkdir()  # a folder that gets raw_data later is one
    assert tmp_path / "empty" in find_experiments(tmp_path)
