"""``metarl bench envs``: env throughput (single env, vector backends, driving) and worker memory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from metarl.cli._args import check_writable, whole
from metarl.errors import UsageError
from metarl.files import atomic_write


def add_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="measure env throughput (`metarl bench envs`)")
    b.add_argument("what", choices=("envs",), help="envs: single-env, vector and driving steps/s, memory")
    b.add_argument("--json", nargs="?", const="auto", type=str, metavar="PATH",
                   help="also write the report as JSON (default path: "
                        "benchmarks/results/bench_envs-<host>.json inside a metarl checkout, "
                        "else ./bench_envs-<host>.json)")
    b.add_argument("--quick", action="store_true", help="a smoke run of under a minute")
    b.add_argument("--max-workers", type=whole("--max-workers", 4),
                   help="largest worker count (default: cores)")
    b.add_argument("--steps", type=whole("--steps", 3000), default=3000,
                   help="timed steps per single-env measurement")
    b.add_argument("--repeats", type=whole("--repeats", 2), default=2,
                   help="alternating measurements per env (single) and per worker count (vector); "
                        "the best is kept")
    b.add_argument("--slots-per-worker", type=whole("--slots-per-worker", 2), default=2,
                   help="env slots per shm worker process")
    b.add_argument("--worker-counts", metavar="N,N,...",
                   help="the vector section's worker counts (default 1, 2, 4, ... up to --max-workers)")
    b.add_argument("--rss-steps", type=int, default=0,
                   help="also step this many slot-steps and sample worker RSS")
    b.add_argument("--sections", default="single,vector,driving",
                   help="comma-separated subset of single,vector,driving")


def run(args: argparse.Namespace) -> int:
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = set(sections) - {"single", "vector", "driving"}
    if unknown or not sections:
        raise UsageError(f"--sections {args.sections!r}: choose from single, vector, driving "
                         "(comma-separated)")
    if args.rss_steps < 0:
        raise UsageError(f"--rss-steps must be >= 0, got {args.rss_steps}: give e.g. --rss-steps 1000000 "
                         "(0: no RSS run)")
    worker_counts = None
    if args.worker_counts is not None:
        try:
            worker_counts = [int(w) for w in args.worker_counts.split(",")]
        except ValueError:
            worker_counts = []
        if not worker_counts or min(worker_counts) < 1:
            raise UsageError(f"--worker-counts {args.worker_counts!r}: give positive integers, "
                             "comma-separated, e.g. --worker-counts 1,16")
    out = None
    if args.json is not None:
        out = _json_path(args.json)
        check_writable(out, "--json")
    from metarl import envbench as bench  # lazy: it imports Meta-World and the vector backends

    def write(report: dict) -> None:  # after every section, atomically: a cut-short run keeps its numbers
        with atomic_write(out) as f:
            f.write(json.dumps(report, indent=2) + "\n")

    bench.run(quick=args.quick, max_workers=args.max_workers, steps=args.steps, repeats=args.repeats,
              slots_per_worker=args.slots_per_worker, rss_steps=args.rss_steps, sections=sections,
              worker_counts=worker_counts,
              on_section=None if out is None else write)
    if out is not None:
        print(f"wrote {out}")
    return 0


def _json_path(text: str) -> Path:
    if text != "auto":
        return Path(text)
    import socket

    name = f"bench_envs-{socket.gethostname()[:20]}.json"
    results = Path("benchmarks") / "results"
    return results / name if results.is_dir() else Path(name)
