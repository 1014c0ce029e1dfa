"""The report of a 400-tile x 8-round run stays a few MB and still says what it should, from
synthetic products written by the daemon's own writers: the ledger (3,200 units through
`Ledger`, a few failed), the quality log (`QualityLog`, one fiducial and two bits per unit)
and the preview (`MosaicPreview`, 2048 x 2048 tiles of Poisson noise and spots at the
simulator's stage grid: the size of a real run's mosaic, and about the worst case for PNG).
The preview of round 0 is written tile by tile; rounds 1-7 are hard-linked copies of it (400
more adds per round would cost minutes, and each round is read and encoded on its own)."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from monitor.browser import chromium
from PIL import Image
from support.experiment import write_config

from daemon.config import load_settings
from daemon.datastore.statedir import ledger_path, state_dir
from daemon.ingest.ledger import Ledger, UnitResult, unit_id
from daemon.pixels.quality import EntryQuality
from daemon.products.alertlog import AlertLog, alert_log_path
from daemon.products.preview import PREVIEW_DIR, MosaicPreview, image_dir
from daemon.products.qualitylog import QUALITY_DB, QualityLog, QualityRow
from daemon.report import write_report
from daemon.report.mosaics import MOSAIC_SIDE
from daemon.simulate.settings import SimulationSettings
from daemon.simulate.stage import stage_position
from daemon.simulate.writer import metadata_files, write_csv

RUN = SimulationSettings(tiles=400, rounds=8, size=2048, z=50)
REPORT_BOUND_MB = 3.0  # the whole file, eight mosaics included (measured: 1.8 MB)
FAILED = {unit_id(17, 3): "NDTiff.index: entry 4: truncated", unit_id(256, 7): "disk full"}
PLANE_UM = 0.108


def write_plan(experiment: Path) -> None:
    """raw_data's CSVs as the microscope writes them (no dataset: only the plan is read)."""
    raw = experiment / "raw_data"
    raw.mkdir(parents=True)
    for name, rows in metadata_files(RUN).items():
        write_csv(raw / name, rows)
    for tile in range(RUN.tiles):
        x, y, z = stage_position(RUN, tile)
        name = f"{RUN.root_name}_r0001_tile{tile:04d}_stage_positions.csv"
        write_csv(raw / name, [["stage_x", "stage_y", "stage_z"], [x, y, z]])


def write_ledger(store: Path) -> None:
    """Every unit seen and converted, but those of FAILED."""
    ledger = Ledger(ledger_path(store))
    try:
        for tile in range(RUN.tiles):
            for round_ in range(RUN.rounds):
                dataset = f"{RUN.root_name}_r{round_ + 1:04d}_tile{tile:04d}_1"
                uid = unit_id(tile, round_)
                ledger.observe(tile, round_, dataset, f"fp{uid}")
                claimed = ledger.claim(uid)
                assert claimed is not None
                if uid in FAILED:
                    ledger.fail(claimed, f"raw_data/{dataset}: {FAILED[uid]}")
                    continue
                outputs = (f"polyDT/tile{tile:04d}/round{round_:04d}.zarr",)
                ledger.finish(claimed, UnitResult(1_258_291_200, "0", outputs, 2.0, 3.0, 2))
    finally:
        ledger.close()


def write_quality(store: Path) -> None:
    """A fiducial and two bits per converted unit, at the tile's stage position."""
    rng = np.random.default_rng(1)
    rows = []
    for tile in range(RUN.tiles):
        x, y, z = stage_position(RUN, tile)
        for round_ in range(RUN.rounds):
            if unit_id(tile, round_) in FAILED:
                continue
            entries = [("round", round_, f"polyDT/tile{tile:04d}/round{round_:04d}.zarr")] + [
                ("bit", b, f"readouts/tile{tile:04d}/bit{b:03d}.zarr")
                for b in (2 * round_ + 1, 2 * round_ + 2)
            ]
            for kind, index, entry in entries:
                focus = tuple(float(v) for v in rng.normal(50, 5, RUN.z))
                quality = EntryQuality(110.0, 100.0, 400.0 * rng.uniform(0.9, 1.1), 0.0, focus, 25)
                rows.append(QualityRow.of(entry, kind, tile, round_, index, (z, y, x), quality))
    log = QualityLog(state_dir(store) / QUALITY_DB)
    try:
        log.record(rows)
    finally:
        log.close()


def write_previews(store: Path) -> None:
    """Round 0's mosaic tile by tile; the other rounds hard-linked copies of it."""
    rng = np.random.default_rng(2)
    backgrounds = [rng.poisson(100, (1, RUN.size, RUN.size)).astype(np.uint16) for _ in range(4)]
    preview = MosaicPreview(store / PREVIEW_DIR)
    for tile in range(RUN.tiles):
        stack = backgrounds[tile % 4].copy()
        spots = rng.integers(0, RUN.size, (2, 300))
        stack[0, spots[0], spots[1]] = rng.integers(300, 3000, 300).astype(np.uint16)
        x, y, _ = stage_position(RUN, tile)
        preview.add("round0000", stack, (y, x), PLANE_UM)
    first = image_dir(store / PREVIEW_DIR, "round0000")
    for round_ in range(1, RUN.rounds):
        target = image_dir(store / PREVIEW_DIR, f"round{round_:04d}")
        shutil.copytree(first, target, copy_function=os.link)


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp_path = tmp_path_factory.mktemp("big")
    experiment = tmp_path / "exp"
    write_plan(experiment)
    store = experiment / "qi2labdatastore"
    state_dir(store).mkdir(parents=True)
    write_ledger(store)
    write_quality(store)
    write_previews(store)
    alerts = AlertLog(alert_log_path(store))
    try:
        for n, uid in enumerate(FAILED):
            alerts.start(f"unit_failed:{uid}", "unit_failed", uid, f"{uid} failed", 1.79e9 + n)
    finally:
        alerts.close()
    return experiment, write_config(tmp_path / "config.toml")


def test_a_400_tile_8_round_report_is_a_few_mb_and_complete(big_run: tuple[Path, Path]) -> None:
    experiment, config = big_run
    path = write_report(experiment, load_settings(config))
    size_mb = path.stat().st_size / 1e6
    print(f"report of {RUN.tiles} tiles x {RUN.rounds} rounds: {size_mb:.2f} MB")
    assert size_mb < REPORT_BOUND_MB
    html = path.read_text(encoding="utf-8")
    mosaics = re.findall(
        r'<img src="data:image/png;base64,([^"]+)"[^>]*alt="mosaic of (\w+)"', html
    )
    assert [name for _, name in mosaics] == [f"round{r:04d}" for r in range(RUN.rounds)]
    for encoded, name in mosaics:  # each a PNG, within the bound, of the whole mosaic
        image = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert image.format == "PNG" and max(image.size) <= MOSAIC_SIDE, (name, image.size)
        assert max(image.size) > MOSAIC_SIDE // 2, (name, image.size)
        grey = np.asarray(image)  # cropped to the tiles: no empty canvas along an edge
        assert all(edge.any() for edge in (grey[0], grey[-1], grey[:, 0], grey[:, -1])), name
    text = re.sub(r"<[^>]+>", " ", html)
    assert re.search(r"units planned\s+3200\s", text) and re.search(r"units done\s+3198\s", text)
    assert re.search(r"units failed\s+2\s", text)
    for uid, reason in FAILED.items():
        assert uid in text and reason in text
    assert text.count("unit_failed") == len(FAILED)
    assert html.count("<rect ") == 3 * RUN.tiles  # three heatmaps, every tile on each
    assert "Fiducial shifts: not measured" in text
    with chromium() as driver:  # a file this size still opens cleanly, every mosaic decoded
        driver.get(path.as_uri())
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        decoded = driver.execute_script(
            "return Array.from(document.images).filter(i => i.complete && i.naturalWidth).length"
        )
        driver.save_screenshot(str(experiment.parent / "run-report.png"))
    assert severe == [] and decoded == RUN.rounds, severe
