"""Section 5 (and the long run of section 4): does bookkeeping grow with the number of units?

Two experiments of the same tiny datasets (so a unit costs the same in both and only the count
differs): 10 units, and thousands (`tiles` x 8 rounds). Each is ingested by
`qi2lab-ingest ingest` into a fresh datastore; the small one before and after the big one, so
both see the same machine. Per-unit time is given two ways: the whole process divided by the
units (start-up included), and first unit started to last unit done divided by the units (the
steady state, which is what a growing ledger or a growing datastore.json would slow down).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import DaemonRun, median, remove, rss_median_between, run_daemon, write_config
from report import Row, Section, table

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

TINY = {"z": 2, "size": 32, "channels": 2}
SMALL_TILES, SMALL_ROUNDS = 5, 2  # 10 units
BIG_ROUNDS = 8


@dataclass
class Outcome:
    units: int
    run: DaemonRun

    @property
    def wall_per_unit(self) -> float:
        return self.run.wall_s / self.units

    @property
    def span_per_unit(self) -> float:
        return self.run.units_span_s() / self.units

    @property
    def startup_s(self) -> float:
        """Process start to first unit started: imports, plan, calibrations, the first scan."""
        started = min(e["t"] for e in self.run.named(Event.UNIT_STARTED))
        return started - min(e["t"] for e in self.run.events)


def _ingest(work: Path, experiment: Path, tag: str, units: int) -> Outcome:
    dest = work / f"store-{tag}"
    config = write_config(work / f"{tag}.toml", dest)
    run = run_daemon("ingest", experiment, config)
    remove(dest)
    if run.returncode != 0 or len(run.named(Event.UNIT_DONE)) != units:
        raise RuntimeError(f"ingest {tag} did not convert {units} units; see {config}.log")
    return Outcome(units, run)


def scaling(work: Path, big_tiles: int) -> tuple[Section, list[Row], list[str]]:
    """Section 5, plus the RSS-growth row and note of section 4 from the big run."""
    small_exp, big_exp = work / "tiny-small", work / "tiny-big"
    simulate(small_exp, SimulationSettings(tiles=SMALL_TILES, rounds=SMALL_ROUNDS, **TINY))
    simulate(big_exp, SimulationSettings(tiles=big_tiles, rounds=BIG_ROUNDS, **TINY))
    n_small, n_big = SMALL_TILES * SMALL_ROUNDS, big_tiles * BIG_ROUNDS
    small = [_ingest(work, small_exp, "small-0", n_small)]
    big = _ingest(work, big_exp, "big", n_big)
    small += [_ingest(work, small_exp, f"small-{i}", n_small) for i in (1, 2)]
    remove(small_exp)
    remove(big_exp)

    span_small = median([o.span_per_unit for o in small])
    wall_small = median([o.wall_per_unit for o in small])
    span_ratio = big.span_per_unit / span_small
    rows = [
        Row(f"per unit, {n_small} units (steady)", f"{span_small * 1000:.0f} ms", ""),
        Row(f"per unit, {n_big} units (steady)", f"{big.span_per_unit * 1000:.0f} ms", ""),
        Row(f"{n_big} / {n_small} units, steady", f"{span_ratio:.2f}", "<= 1.2", span_ratio <= 1.2),
        Row(
            f"{n_big} / {n_small} units, whole process",
            f"{big.wall_per_unit / wall_small:.2f}",
            "(info)",
        ),
        Row(f"start-up with {n_big} datasets", f"{big.startup_s:.1f} s", "(info)"),
    ]
    lines = [
        [
            label,
            f"{o.run.wall_s:.2f}",
            f"{o.startup_s:.2f}",
            f"{o.run.units_span_s():.2f}",
            f"{o.wall_per_unit * 1000:.1f}",
            f"{o.span_per_unit * 1000:.1f}",
        ]
        for label, o in zip(
            [
                f"{n_small} units, before",
                f"{n_big} units",
                f"{n_small} units, after",
                f"{n_small} units, after (2)",
            ],
            [small[0], big, *small[1:]],
            strict=True,
        )
    ]
    body = [
        f"Tiny datasets ({TINY['z']} z x {TINY['size']}x{TINY['size']} px x {TINY['channels']}"
        f" channels, 2 entities per unit): {SMALL_TILES} tiles x {SMALL_ROUNDS} rounds and"
        f" {big_tiles} tiles x {BIG_ROUNDS} rounds, both from"
        " `daemon.simulate.microscope.simulate`."
        " The 10-unit run is repeated (before and after the big one) and its median taken.",
        "",
        *table(
            [
                "run",
                "wall s",
                "start-up s",
                "units span s",
                "wall ms/unit",
                "steady ms/unit",
            ],
            lines,
        ),
    ]
    done_at = sorted(e["t"] for e in big.run.named(Event.UNIT_DONE))
    start_mb, end_mb = (
        rss_median_between(big.run, done_at[n_big * a // 10], done_at[n_big * b // 10 - 1])
        for a, b in ((1, 2), (9, 10))
    )
    growth = end_mb / start_mb - 1
    memory_rows = [
        Row(
            f"RSS growth over {n_big} units",
            f"{growth * 100:+.1f} % ({start_mb:.0f} -> {end_mb:.0f} MB)",
            "< 5 %",
            growth < 0.05,
        )
    ]
    memory_note = [
        f"RSS growth: the {n_big}-unit `ingest` run, sampled from /proc every 0.1 s; start is"
        " the median sample while its units 10-20 % were done (warm), end the median while"
        " units 90-100 % were done (not one sample each, whose allocator noise moved the"
        " figure by 2-4 points from run to run, nor the exit's last rewrite of the state"
        f" files) ({big.run.wall_s:.0f} s run, peak {big.run.peak_rss_mb:.0f} MB)."
    ]
    return Section("Scaling with the number of units", rows, body), memory_rows, memory_note
