"""Benchmarks of issue 6: `make bench` runs this; it prints the summary and writes RESULTS.md.

Sections (each figure measured side by side in the same run, on simulator data):
1. throughput ceiling (direct tensorstore vs `qi2lab-ingest ingest`), 2. the upstream reference
converter vs ingest, 3. live latency and time-to-ready (paced simulator + `watch`), 4. memory
(peak RSS per worker count, growth over a long run), 5. scaling (10 vs thousands of units),
6. codec table. The default size finishes in about a quarter of an hour on 2 cores; `--scale`
multiplies the number of datasets of every section, `--size`/`--z` set the realistic stacks.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from converters import jobs
from harness import MB, machine, remove
from live import LiveRun, live_latency
from report import Section, kept_blocks, results_markdown, summary
from scaling import scaling
from throughput import Bench, codec_table, memory_peaks, throughput

from daemon.datastore.arrays import make_context
from daemon.simulate import SimulationSettings, simulate

SECTIONS = ("throughput", "live", "memory", "scaling", "codecs")
HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048, help="pixels per side of realistic stacks")
    p.add_argument("--z", type=int, default=20, help="z planes of realistic stacks")
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies dataset counts: 4 realistic, 12 live, 2000 tiny units at 1",
    )
    p.add_argument("--live-size", type=int, help="pixels per side in the live run (size / 2)")
    p.add_argument("--reps", type=int, default=3, help="repetitions of sections 1-2")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a new one in /tmp)")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    return p.parse_args(argv)


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, work: Path) -> tuple[list[Section], list[str]]:
    wanted = set(args.only or SECTIONS)
    context = make_context()
    sections: dict[str, Section] = {}
    notes: list[str] = []
    memory = Section("Memory")

    if wanted & {"throughput", "memory", "codecs"}:
        settings = SimulationSettings(
            tiles=max(1, round(2 * args.scale)), rounds=2, z=args.z, size=args.size
        )
        say(f"simulating {settings.tiles * settings.rounds} datasets of {args.size} px, {args.z} z")
        started = time.perf_counter()
        experiment = work / "realistic"
        simulate(experiment, settings)
        bench = Bench(experiment, work, jobs(experiment), context)
        notes.append(
            f"Simulating the {len(bench.jobs)} realistic datasets"
            f" ({bench.raw_bytes / MB:.0f} MB) took {time.perf_counter() - started:.0f} s."
        )
        if "throughput" in wanted:
            say(f"sections 1-2: direct / ingest / reference, {args.reps} repetitions")
            sections["1"], sections["2"] = throughput(bench, args.reps)
        if "memory" in wanted:
            say("section 4: peak RSS for 1, 2, 4 workers")
            rows, body = memory_peaks(bench)
            memory.rows += rows
            memory.body += body
        if "codecs" in wanted:
            say("section 6: codecs")
            sections["6"] = codec_table(bench)
        remove(experiment)

    if "live" in wanted:
        spec = LiveRun(
            tiles=4,
            rounds=max(3, round(3 * args.scale)),
            z=args.z,
            size=args.live_size or args.size // 2,
        )
        say(f"section 3: live, {spec.tiles * spec.rounds} paced datasets of {spec.size} px")
        sections["3"], _ = live_latency(work, spec, context)

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
    return [sections[k] for k in sorted(sections)], notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="qi2lab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    command = shlex.join([".venv/bin/python", "bench/run.py", *(argv or sys.argv[1:])])
    date = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    info = machine(work)
    started = time.perf_counter()
    try:
        sections, notes = run(args, work)
    finally:
        remove(work)
    notes.append(f"Whole benchmark: {(time.perf_counter() - started) / 60:.1f} min.")
    kept = kept_blocks(args.results.read_text()) if args.results.exists() else ""
    text = results_markdown(command, date, info, sections, notes)
    args.results.write_text(f"{text}\n{kept}" if kept else text)
    print("\n".join(summary(sections)))
    for note in notes:
        print(note)
    print(f"details: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
