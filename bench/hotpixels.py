"""Hot-pixel replacement's cost (issue 10): the same FLIR units converted with and without it.

A FLIR experiment of realistic datasets (hot pixels, saturated voxels and spots above 100 e-,
as the simulator makes them) is ingested by `qi2lab-ingest ingest` with `[corrections]
hotpixel = "off"` and `"on"`, alternating which goes first, into fresh datastores, one worker
(so units do not share the cores). The figure is each unit's own conversion time as the daemon
logs it ("unit done" seconds); the target is at most 5 % more with the replacement.

    .venv/bin/python bench/hotpixels.py [--size 2048] [--z 20] [--units 2] [--reps 3]

The result replaces the hot-pixel block of RESULTS.md (`bench/run.py` keeps that block).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from harness import machine, median, remove, run_daemon, write_config
from report import table

from daemon.simulate import SimulationSettings, simulate

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- hotpixels:begin -->", "<!-- hotpixels:end -->"
TARGET = 1.05


def measure(work: Path, experiment: Path, setting: str, units: int) -> list[float]:
    """Per-unit seconds of one `ingest` with hot-pixel replacement `setting`."""
    store = work / f"store-{setting}"
    config = write_config(work / f"{setting}.toml", store, workers=1)
    config.write_text(config.read_text() + f'\n[corrections]\nhotpixel = "{setting}"\n')
    run = run_daemon("ingest", experiment, config)
    remove(store)
    seconds = run.unit_seconds()
    if run.returncode != 0 or len(seconds) != units:
        raise RuntimeError(f"ingest with hotpixel={setting} failed; see {config}.log")
    return seconds


def block(command: str, settings: SimulationSettings, runs: dict[str, list[list[float]]]) -> str:
    """The markdown block for RESULTS.md."""
    on = median([s for rep in runs["on"] for s in rep])
    off = median([s for rep in runs["off"] for s in rep])
    ratio = on / off
    rows = [
        [str(i + 1), f"{median(a):.2f}", f"{median(b):.2f}", f"{median(b) / median(a):.3f}"]
        for i, (a, b) in enumerate(zip(runs["off"], runs["on"], strict=True))
    ]
    mb = 2 * settings.size**2 * settings.z * settings.channels / 1e6
    verdict = "met" if ratio <= TARGET else "MISSED"
    return "\n".join(
        [
            BEGIN,
            "## Hot pixels (issue 10)",
            "",
            f"- command: `{command}`",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- FLIR units of {settings.channels} channels x {settings.z} planes x"
            f" {settings.size} x {settings.size} ({mb:.0f} MB each), 1 worker; seconds are"
            " each unit's conversion as the daemon logs it (median over units).",
            "",
            *table(["rep", "off s", "on s", "on / off"], rows),
            "",
            f"Median unit: {off:.2f} s without, {on:.2f} s with hot-pixel replacement:"
            f" **{ratio:.3f}** (target <= {TARGET}, {verdict}).",
            END,
        ]
    )


def write_block(results: Path, text: str) -> None:
    """Replace (or append) the hot-pixel block of RESULTS.md."""
    current = results.read_text() if results.exists() else ""
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        current = head + text + rest.split(END, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    results.write_text(current)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--z", type=int, default=20)
    p.add_argument("--units", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args(argv)
    settings = SimulationSettings(
        tiles=args.units, rounds=1, z=args.z, size=args.size, channels=3, camera="flir"
    )
    with tempfile.TemporaryDirectory(prefix="qi2lab-hotpixels-") as tmp:
        work = Path(tmp)
        print(machine(work))
        simulate(work / "exp", settings)
        runs: dict[str, list[list[float]]] = {"off": [], "on": []}
        for rep in range(args.reps):
            for setting in ("off", "on") if rep % 2 == 0 else ("on", "off"):
                runs[setting].append(measure(work, work / "exp", setting, args.units))
                print(setting, runs[setting][-1], flush=True)
    command = " ".join([".venv/bin/python bench/hotpixels.py", *(argv or sys.argv[1:])])
    text = block(command, settings, runs)
    print(text)
    write_block(args.results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
