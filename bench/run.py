"""Benchmarks of issues 6 and 13: `make bench` runs this; it prints a summary, writes RESULTS.md.

Sections (each figure measured side by side in the same run, on simulator data):
1. whole-process throughput (`qi2lab-ingest ingest` vs the whole-process bare writer, both
layouts, small and realistic datasets; for each, where `ingest`'s time goes against the bare
writer's and the limit that sets, bench/ingestlimit.py), 2. the upstream reference
converter vs ingest, 3. live latency and time-to-ready (paced writer + `watch`, cold start), 4.
memory (peak RSS per worker count, growth over a long run), 5. scaling (10 vs thousands of
units), 6. codec table (the default codec's rule, zarr-python read-back), 7. keeping up with a
paced microscope (1, 2, 4 workers), 8. where `ingest`'s time goes (py-spy; each step's CPU, and
ingest's per-channel products against issue 25's 5 % of the v0.6 write). About 28 minutes on
2 cores. And `root` (issue 24, bench/root.py, about 4 minutes): `watch --root` following two
paced experiments at once against one, and its idle cost per poll for 50 finished experiments;
it goes into its own block of RESULTS.md (`<!-- root:begin -->`), so `--only root` leaves the
other sections as they are. And `microscope` (issue 25, bench/microscope.py, about 6 minutes, a
block too): the microscope's own frame-write latency at 150 MB/s of 2048 px frames, alone and
with `watch` running at the shipped unit's priorities, and a plot of both
(bench/microscope_latency.png). And `flat` (issue 25, bench/flat.py, its own block too, about 18
minutes at its default 10,000 units): the daemon's CPU per unit early and late in a paced run of
1,250 tiles x 8 rounds (both layouts side by side), the page's `/api/state` and `status` timed
against those daemons at ~10,000 units and after, and the wall time per unit of that run as a
backlog against an 80-unit one (`--flat-tiles 40`: 320 units, a few minutes).

Every dataset of an experiment replays the planes of one dataset rendered by the simulator
(bench/paced.py): rendering 2048 px planes is slower than converting them, and the content,
hence the compression, is the simulator's either way. Every daemon run computes its PSFs in a
background thread beside its first units, as on the microscope PC.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from codec_table import codec_table
from converters import jobs
from flat import flat_section
from harness import compile_daemon, machine, remove
from keepup import Acquisition, keep_up
from live import LiveRun, live_latency
from microscope import MicroscopeSpec, microscope_section
from paced import prerender, replay
from report import Section, block_markdown, kept_blocks, results_markdown, summary, write_block
from root import RootAcquisition, root_section
from scaling import scaling
from steps import step_costs
from throughput import Bench, memory_peaks, whole_process

from daemon.datastore.arrays import make_context
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SECTIONS = (
    "throughput",
    "live",
    "memory",
    "scaling",
    "codecs",
    "keepup",
    "profile",
    "root",
    "microscope",
    "flat",
)
HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048, help="pixels per side of realistic stacks")
    p.add_argument("--small-size", type=int, default=1024, help="pixels per side, small runs")
    p.add_argument("--z", type=int, default=30, help="z planes of every stack")
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies dataset counts: 4 realistic and small, 12 live, 2000 tiny units at 1",
    )
    p.add_argument("--reps", type=int, default=3, help="repetitions of sections 1-2, microscope")
    p.add_argument(
        "--microscope-datasets",
        type=int,
        default=MicroscopeSpec.datasets,
        help="datasets of each run of the microscope section",
    )
    p.add_argument(
        "--flat-tiles",
        type=int,
        default=1250,
        help="tiles x 8 rounds of `flat` (1250: issue 25's 10,000 units, ~18 min; 40: 320)",
    )
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a new one in /tmp)")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    return p.parse_args(argv)


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class Experiments:
    """The finished experiments of sections 1, 2, 4, 6, 8, made on first use, each dataset
    replaying one rendered dataset's planes (see the module docstring)."""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.work = work
        self.args = args
        self.notes: list[str] = []
        self._made: dict[int, Path] = {}

    def planes(self, size: int) -> Path:
        """The planes of one dataset of `size` px (3 channels, --z planes), rendered once."""
        path = self.work / f"planes-{size}.npy"
        if not path.exists():
            started = time.perf_counter()
            prerender(self.settings(size, 1), path)
            self.notes.append(
                f"Rendering the planes of one {size} px dataset took"
                f" {time.perf_counter() - started:.0f} s."
            )
        return path

    def settings(self, size: int, tiles: int) -> SimulationSettings:
        return SimulationSettings(tiles=tiles, rounds=2, z=self.args.z, size=size)

    def bench(self, size: int, context: object) -> Bench:
        """An experiment of 2 x scale tiles x 2 rounds of `size` px datasets."""
        experiment = self.work / f"experiment-{size}"
        if size not in self._made:
            settings = self.settings(size, max(1, round(2 * self.args.scale)))
            say(f"writing {settings.tiles * settings.rounds} datasets of {size} px")
            planes = np.load(self.planes(size), mmap_mode="r")
            simulate(experiment, settings, render=replay(planes, settings))
            self._made[size] = experiment
        return Bench(experiment, self.work, jobs(experiment), context)

    def remove(self) -> None:
        for experiment in self._made.values():
            remove(experiment)


def run(
    args: argparse.Namespace, work: Path
) -> tuple[list[Section], dict[str, Section], list[str]]:
    """The numbered sections, the sections kept in blocks of their own (by name), the notes."""
    wanted = set(args.only or SECTIONS)
    context = make_context()
    made = Experiments(work, args)
    sections: dict[str, Section] = {}
    memory = Section("Memory")

    if "throughput" in wanted:
        say(f"section 1: small runs, ingest / bare writer, {args.reps} reps, profile, limit")
        sections["1"], _ = whole_process(made.bench(args.small_size, context), args.reps, "Small")
        say(
            f"sections 1-2: realistic runs, ingest / bare writer / reference, {args.reps} reps,"
            " profile, limit"
        )
        realistic, sections["2"] = whole_process(
            made.bench(args.size, context), args.reps, "Realistic", reference=True
        )
        sections["1"].rows += realistic.rows
        sections["1"].body += ["", *realistic.body]
    if "memory" in wanted:
        say("section 4: peak RSS for 1, 2, 4 workers")
        rows, body = memory_peaks(made.bench(args.size, context))
        memory.rows += rows
        memory.body += body
    if "codecs" in wanted:
        say("section 6: codecs")
        sections["6"] = codec_table(made.bench(args.size, context))
    if "profile" in wanted:
        say("section 8: profile of ingest, small run")
        sections["8"] = profile_section(made.bench(args.small_size, context), work)
    made.remove()

    if "live" in wanted:
        spec = LiveRun(4, max(3, round(3 * args.scale)), args.z, args.small_size)
        say(f"section 3: live, {spec.tiles * spec.rounds} paced datasets of {spec.size} px")
        sections["3"], _ = live_latency(work, spec, made.planes(spec.size), context)

    if "keepup" in wanted:
        acq = Acquisition(z=args.z, size=args.small_size)
        say("section 7: keeping up, paced runs with 1, 2, 4 workers and the default count (0)")
        sections["7"] = keep_up(work, acq, made.planes(acq.size))

    blocks = {}
    if "root" in wanted:
        root_acq = RootAcquisition(z=args.z, size=args.small_size)
        say("root: watch --root, two paced experiments against one; idle cost per poll")
        blocks["root"] = root_section(work, made.planes(root_acq.size), root_acq)
    if "microscope" in wanted:
        scope = MicroscopeSpec(datasets=args.microscope_datasets, z=args.z, size=args.size)
        say(f"microscope: frame writes at {scope.mbps:.0f} MB/s without/with watch, {args.reps}x")
        blocks["microscope"] = microscope_section(work, made.planes(scope.size), scope, args.reps)
    if "flat" in wanted:
        say(f"flat: cost per unit over {args.flat_tiles * 8} tiny units, live and backlog")
        blocks["flat"] = flat_section(work, args.flat_tiles)

    if wanted & {"scaling", "memory"}:
        tiles = max(2, round(250 * args.scale))
        say(f"section 5: scaling, 10 vs {tiles * 8} tiny units")
        sections["5"], rows, note = scaling(work, tiles)
        memory.rows += rows
        memory.body += ["", *note]
    if memory.rows:
        sections["4"] = memory
    for key, section in sections.items():
        section.title = f"{key}. {section.title}"
    return [sections[k] for k in sorted(sections)], blocks, made.notes


def profile_section(bench: Bench, work: Path) -> Section:
    """Section 8: py-spy's view of one `ingest` of the small experiment (bench/spyprofile.py),
    and each step of a unit timed alone (bench/steps.py), whose CPU budget is its summary row."""
    budget, steps = step_costs(bench.jobs, bench.codec, bench.context, work)
    if shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None:
        spy = ["py-spy is not installed (`pip install -e '.[bench]'`): no profile."]
    else:
        args = [HERE / "spyprofile.py", bench.experiment, "--top", 15, "--raw", work / "spy.txt"]
        out = subprocess.run(
            [sys.executable, *map(str, args)], capture_output=True, text=True, check=True
        )
        spy = [
            f"`bench/spyprofile.py` on {bench.describe()}, 2 workers, the default codec. py-spy"
            " samples Python threads only while they are busy (a thread waiting for a core"
            " counts as busy); tensorstore's compression runs in its own C++ threads, which it"
            " does not see.",
            "",
            "```text",
            *out.stdout.splitlines(),
            "```",
        ]
    return Section("Where ingest's time goes (small run)", [budget], [*spy, "", *steps])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="qi2lab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    command = shlex.join([".venv/bin/python", "bench/run.py", *(argv or sys.argv[1:])])
    date = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    info = machine(work)
    compile_daemon()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        sections, blocks, notes = run(args, work)
    finally:
        remove(work)
    notes.append(
        f"Whole benchmark: {(time.perf_counter() - started) / 60:.1f} min; load average (1 min)"
        f" {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on"
        f" {os.cpu_count()} cores."
    )
    for name, block in blocks.items():
        write_block(args.results, name, block_markdown(name, command, date, info, block, notes))
    if sections:
        kept = kept_blocks(args.results.read_text()) if args.results.exists() else ""
        text = results_markdown(command, date, info, sections, notes)
        args.results.write_text(f"{text}\n{kept}" if kept else text)
    print("\n".join(summary([*sections, *blocks.values()])))
    for note in notes:
        print(note)
    print(f"details: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
