"""``metarl compare A B``: paired comparison of two evaluations of the same held-out tasks."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from metarl.rundir import read_eval


def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("compare", help="paired comparison of two evaluations of the same held-out tasks")
    c.add_argument("a", type=Path, help="an evaluation JSON (eval*.json), or a run directory (its eval.json)")
    c.add_argument("b", type=Path, help="the same for the other evaluation; differences are B - A")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    from metarl.evaluator import compare

    result = compare(read_eval(args.a), read_eval(args.b))
    if args.json:
        def finite(x):
            return {k: finite(v) for k, v in x.items()} if isinstance(x, dict) else (
                None if isinstance(x, float) and not math.isfinite(x) else x)
        print(json.dumps({"a": str(args.a), "b": str(args.b), **finite(result)}, indent=2))
        return 0
    _print_table(args, result)
    return 0


def _print_table(args: argparse.Namespace, result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"B - A: {result['benchmark']}, rewards {result['reward_version'] or 'n/a'}, "
                        f"{result['num_tasks']} held-out tasks")
    table.add_column("task", no_wrap=True)
    for col in ("A", "B", "B - A"):
        table.add_column(col, justify="right")
    for name, row in result["per_task"].items():
        table.add_row(name, f"{row['a']:.1%}", f"{row['b']:.1%}", f"{row['diff']:+.1%}")

    def pm(row: dict, fmt: str) -> str:
        se = row["paired_se"]
        spread = "" if not math.isfinite(se) else " ± " + fmt.format(se).lstrip("+")
        return fmt.format(row["diff"]) + spread

    for key, label, fmt in (("success_rate", "success (post)", "{:+.1%}"),
                            ("pre_success_rate", "success (pre)", "{:+.1%}"),
                            ("return", "return (post)", "{:+.1f}"),
                            ("pre_return", "return (pre)", "{:+.1f}")):
        row = result[key]
        a, b = (f"{row[k]:.1%}" if "success" in key else f"{row[k]:.1f}" for k in ("a", "b"))
        table.add_row(f"[bold]{label}[/bold]", a, b, f"[bold]{pm(row, fmt)}[/bold]")
    s = result["success_rate"]
    table.caption = ("± paired standard error over tasks" + (f" (unpaired: ±{s['unpaired_se']:.1%})"
                                                          if math.isfinite(s["unpaired_se"]) else "")
                     + ("; both drew with the same evaluation seed from per-task streams"
                        if result["common_noise"] else "; the evaluations did not share their draws "
                                                       "(other seeds, or written before per-task streams)"))
    console = Console()
    console.print(f"A: {args.a}\nB: {args.b}", soft_wrap=True, highlight=False)
    console.print(table)
