"""``metarl envs``: list task families (classes, splits, options), agents and their options."""

from __future__ import annotations

import argparse
import json

from metarl.config import option_defaults
from metarl.errors import UsageError
from metarl.factory import make_benchmark
from metarl.registry import agent_factory, agent_names, benchmark_factory, benchmark_names
from metarl.rundir import RESERVED


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("envs", help="list benchmarks, task classes, splits, agents and their options")
    e.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    rows: dict[str, dict] = {}
    for name in benchmark_names():
        try:  # one broken plug-in must not hide the other families
            factory = benchmark_factory(name)
            describe = getattr(factory, "describe", None)
            rows[name] = describe() if describe else _describe_by_building(name)
        except Exception as e:
            rows[name] = {"error": str(e) if isinstance(e, UsageError) else f"{type(e).__name__}: {e}"}
    broken_agents = {}
    for name in agent_names():
        try:
            agent_factory(name)
        except UsageError as e:
            broken_agents[name] = str(e)
    agents = [n for n in agent_names() if n not in broken_agents]
    options = {n: option_defaults(agent_factory(n)) for n in agents}
    if args.json:
        print(json.dumps({"benchmarks": rows, "agents": agents, "unavailable_agents": broken_agents,
                          "agent_options": options}, indent=2, default=str))
        return 0
    _print_families(rows)
    print(f"agents: {' '.join(agents)}")
    for name in agents:  # --agent-opt KEY=VALUE; lists as 128,128 (one layer: 128)
        if options[name]:
            shown = (f"{k}={','.join(map(str, v)) if isinstance(v, (tuple, list)) else v}"
                     for k, v in options[name].items())
            print(f"  {name} options (--agent-opt, defaults): {' '.join(shown)}")
    for name, err in broken_agents.items():
        print(f"agent {name}: unavailable: {err}")
    print("Meta-World rewards: v2 (default) or v1, chosen with --reward-version")
    return 0


def _print_families(rows: dict[str, dict]) -> None:
    for name, d in rows.items():
        if "error" in d:
            print(f"{name}: unavailable: {d['error']}")
            continue
        print(f"{name}: {len(d['train'])} train / {len(d['test'])} test classes, "
              f"{d.get('tasks_per_class', '?')} tasks per class, "
              f"{d.get('eval_tasks_per_class', '?')} evaluated per test class")
        if "task_choices" in d:
            print(f"  --task (one of {len(d['task_choices'])}): {' '.join(d['task_choices'])}")
        else:
            print(f"  train: {' '.join(d['train'])}\n  test:  {' '.join(d['test'])}")
        for opt, text in d.get("options", {}).items():
            flag = RESERVED["--env-opt"].get(opt)
            print(f"  option {opt}: {text}" + (f" (give it as {flag}, not --env-opt)" if flag else ""))
        if "note" in d:
            print(f"  note: {d['note']}")


def _describe_by_building(name: str) -> dict:
    bench = make_benchmark(name)
    return {"train": list(bench.train.task_names), "test": list(bench.test.task_names),
            "tasks_per_class": len(bench.train.tasks) // len(bench.train.task_names),
            "eval_tasks_per_class": len(bench.test.evaluation_tasks()) // len(bench.test.task_names)}
