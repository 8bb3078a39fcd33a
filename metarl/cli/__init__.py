"""The ``metarl`` command line: envs, train, eval, compare, report, plot, render, video and bench.

Bad input (unknown names, impossible numbers, unusable paths) prints one ``error:`` line naming
the problem and the fix and exits with code 2, before anything is written.

Each command is a module here with ``add_parser(subparsers)`` and ``run(args) -> exit code``; the work
itself is library code (:mod:`metarl.runs` for run directories). Modules that import torch are imported
inside the commands that use them: env worker processes started from the `metarl` console script
re-import it as their main module, and torch would cost each worker ~120 MiB of private memory (and
`metarl --help` a second).
"""

from __future__ import annotations

import argparse

from metarl import __version__
from metarl.cli import bench, compare, envs, evaluate, plot, render, report, train, video
from metarl.cli._args import Parser
from metarl.errors import exit_code

COMMANDS = {"envs": envs, "train": train, "plot": plot, "eval": evaluate, "compare": compare,
            "report": report, "render": render, "video": video, "bench": bench}
"""Command name -> its module, in ``--help`` order."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="metarl", description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("--version", action="version", version=f"metarl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``metarl`` command; returns the exit code."""
    def run() -> int:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command].run(args)

    return exit_code(run)
