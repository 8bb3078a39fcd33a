"""Write the headline sweeps' rows into the README's results table and the agent pages, from the
checked-in ``metarl report`` output (``benchmarks/results/headline/report.json``).

    python benchmarks/headline_table.py [--check]

README: the table between ``<!-- headline:begin -->`` and ``<!-- headline:end -->``. A row for a (family,
agent) the report covers replaces the row of the same family and agent in place (a new one goes after
its family's last row, else after its benchmark's, else at the end); a row that cites the headline
report but that the report no longer covers is dropped; other rows (single runs, ML10) stay as they are.
Agent pages (``docs/agents/<agent>.md``): the block between the same markers becomes that agent's table.
``--check`` exits 1 if a file would change (a test runs it), without writing.

Each row: interquartile mean over runs x held-out classes with its 95% stratified bootstrap interval,
after adaptation and in the first episode. Bold, in a family of several agents: the after-adaptation IQM
of rows whose interval reaches the family's best IQM (not separable from the best at that level).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "benchmarks/results/headline/report.json"
BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"
AGENTS = {"rl2": "RL²", "maml": "MAML", "pearl": "PEARL", "zero-shot": "zero-shot", "random": "random"}
PAGES = {"rl2": "rl2", "maml": "maml", "pearl": "pearl", "zero-shot": "zero-shot"}


def family(task_set: dict) -> str:
    """``"Driving"``, ``"Driving (extrapolate)"``: the benchmark and its non-default held-out split."""
    options = task_set["env_options"]
    extra = ", ".join(str(v) if k == "test" else f"{k}={v}" for k, v in sorted(options.items()))
    name = task_set["benchmark"].replace("/", " ")  # "ML1/reach-v3" as the README writes it
    return f"{name} ({extra})" if extra else name


def steps(values: list[int]) -> str:
    """``151k``, ``2.4M``, ``1.1-1.3M``: env steps per seed, as a range when the seeds differ."""
    def one(n: float) -> str:
        return f"{n / 1e6:.1f}M" if n >= 999_500 else f"{n / 1e3:.0f}k"
    lo, hi = one(min(values)), one(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def pct(metric: dict, bold: bool = False) -> str:
    """``93.3% [90.0, 96.7]``: the IQM and its interval, in percent (no interval from one run)."""
    iqm = f"{100 * metric['iqm']:.1f}%"
    iqm = f"**{iqm}**" if bold else iqm
    ci = metric.get("iqm_ci")
    return f"{iqm} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else iqm


def rows(report: dict) -> list[dict[str, str]]:
    """The cells of every group of the report (family, agent, seeds, steps, minutes, after, before), families
    in report order, agents in :data:`AGENTS` order."""
    out = []
    for task_set in report["task_sets"]:
        groups = task_set["groups"]
        best = max(g["metrics"]["success"]["iqm"] for g in groups)
        for g in sorted(groups, key=lambda g: list(AGENTS).index(g["agent"]) if g["agent"] in AGENTS else 99):
            after, before = g["metrics"]["success"], g["metrics"]["pre_success"]
            bold = len(groups) > 1 and (after.get("iqm_ci") or [0, after["iqm"]])[1] >= best
            seeds = "1 seed" if g["num_runs"] == 1 else str(g["num_runs"])
            minutes = [r["train_seconds"] / 60 for r in g["runs"] if r.get("train_seconds")]
            out.append({"family": family(task_set), "agent_id": g["agent"], "agent": AGENTS.get(g["agent"], g["agent"]),
                        "seeds": seeds, "steps": steps([r["env_steps"] for r in g["runs"]]),
                        "minutes": f"{max(minutes):.1f}" if minutes else "n/a", "after": pct(after, bold),
                        "before": pct(before)})
    return out


def table_line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def readme_table(text: str, report: dict) -> str:
    """``text`` with the table between the markers updated from ``report``."""
    head, rest = text.split(BEGIN, 1)
    body, tail = rest.split(END, 1)
    lines = body.strip("\n").splitlines()
    header, rule, old = lines[0], lines[1], lines[2:]
    link = "[report](benchmarks/results/headline/report.md)"
    new = {(r["family"], r["agent"]): table_line([r["family"], r["agent"], r["seeds"], r["steps"], r["after"],
                                                   r["before"], link]) for r in rows(report)}
    kept: list[str] = []
    for line in old:
        key = tuple(cell.strip() for cell in line.split("|")[1:3])
        if key in new:
            kept.append(new.pop(key))
        elif link not in line:  # a row the report never wrote: kept; one it no longer covers: dropped
            kept.append(line)
    for (name, _), line in new.items():  # rows new to the table: after their family's last row, else after
        families = [row.split("|")[1].strip() for row in kept]  # their benchmark's ("Driving (extrapolate)"
        at = ([i for i, f in enumerate(families) if f == name]  # after "Driving"), else at the end
              or [i for i, f in enumerate(families) if f.split(" (")[0] == name.split(" (")[0]] or [len(kept) - 1])
        kept.insert(at[-1] + 1, line)
    return head + BEGIN + "\n" + "\n".join([header, rule, *kept]) + "\n" + END + tail


def page_table(text: str, report: dict, agent: str) -> str:
    """An agent page with its block between the markers rewritten: that agent's rows of ``report``."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    mine = [r for r in rows(report) if r["agent_id"] == agent]
    header = ("| family | training seeds | env steps per seed | train minutes (max) | held-out success, after "
              "adaptation (IQM [95% CI]) | first episode |")
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: |",
             *[table_line([r[k] for k in ("family", "seeds", "steps", "minutes", "after", "before")]) for r in mine]]
    return head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file would change; write nothing")
    args = parser.parse_args(argv)
    report = json.loads(REPORT.read_text())
    targets = {ROOT / "README.md": lambda t: readme_table(t, report)}
    for agent, page in PAGES.items():
        targets[ROOT / f"docs/agents/{page}.md"] = lambda t, a=agent: page_table(t, report, a)
    stale = []
    for path, update in targets.items():
        text = path.read_text()
        if BEGIN not in text or END not in text:
            print(f"error: {path.relative_to(ROOT)} has no {BEGIN} ... {END} block", file=sys.stderr)
            return 2
        new = update(text)
        if new != text:
            stale.append(str(path.relative_to(ROOT)))
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"out of date with {REPORT.relative_to(ROOT)}: {', '.join(stale)} "
              "(python benchmarks/headline_table.py rewrites them)", file=sys.stderr)
        return 1
    print(f"{'would update' if args.check else 'updated'}: {', '.join(stale) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
