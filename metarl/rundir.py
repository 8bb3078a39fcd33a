"""What a run directory holds and the rules for it: ``config.json`` (:class:`RunConfig` plus a ``resolved``
section: device, rewards, metarl version, git commit, the agent's whole config, each resume's commit),
replacing one (``--force``), loading its trained agent, reading evaluation files, and the checks of the
options that define a run. :mod:`metarl.runs` builds on these to create, resume and evaluate runs (and
re-exports them: use that module).

A run directory also holds ``checkpoint.pt``, ``progress.csv``, ``tb/``, ``learning_curve.png`` and
evaluation files: ``eval.json`` for the official protocol, ``eval-<what differs>.json`` otherwise
(:func:`metarl.trainer.eval_file_name`).

Torch-free at import: the CLI imports it, and env worker processes re-import the CLI as their main module.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from metarl import __version__
from metarl.config import agent_config
from metarl.errors import UsageError
from metarl.factory import make_agent, make_benchmark
from metarl.files import atomic_write
from metarl.runlock import LOCK_NAME, RunLock
from metarl.tasks import Benchmark

if TYPE_CHECKING:
    from metarl.learner import MetaAlgorithm
    from metarl.trainer import TrainerConfig

CONFIG_NAME = "config.json"
"""The run's :class:`RunConfig` (and its ``resolved`` section) in a run directory."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run directory."""

    benchmark: str
    """Registered task family, e.g. ``"ML1"``, ``"Toy"`` (``metarl envs`` lists them)."""
    agent: str
    """Registered agent, e.g. ``"rl2"``."""
    task: str | None = None
    """Task class of single-task families (ML1), e.g. ``"reach-v3"``."""
    reward_version: str | None = None
    """Meta-World reward function, ``"v2"`` or ``"v1"`` (None: the family's default)."""
    trainer: TrainerConfig = field(default_factory=lambda: _trainer_config())
    """The training loop's settings: budget (env steps, seconds), slots, seed, backend, evaluations."""
    device: str = "auto"
    """``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``."""
    agent_options: dict = field(default_factory=dict)
    """Agent options given (``--agent-opt``); the checkpoint keeps the agent's whole config."""
    env_options: dict = field(default_factory=dict)
    """Task-family options (``--env-opt``), e.g. ``{"horizon": 200}``."""

    def make_benchmark(self) -> Benchmark:
        """The task family this run trains on (its tasks fixed by ``trainer.seed``). A factory that fails
        with an error of its own (a plug-in's bug, a missing simulator file) is a one-line
        :class:`UsageError` naming the family and where."""
        options = {"reward_version": self.reward_version} if self.reward_version else {}
        try:
            return make_benchmark(self.benchmark, task=self.task, seed=self.trainer.seed,
                                  **{**self.env_options, **options})
        except UsageError:
            raise
        except Exception as e:
            import traceback

            frames = traceback.extract_tb(e.__traceback__)
            at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            raise UsageError(f"task family {self.benchmark!r} failed to build: {type(e).__name__}: {e}{at}; fix "
                             "its factory (`metarl envs` lists the families that build)") from e

    @classmethod
    def from_json(cls, obj: dict) -> RunConfig:
        return cls(**{**obj, "trainer": _trainer_config(**obj["trainer"])})


def _trainer_config(**fields_: Any) -> TrainerConfig:
    from metarl.trainer import TrainerConfig

    return TrainerConfig(**fields_)


def default_out(label: str, agent: str, seed: int) -> Path:
    """``runs/<benchmark>[-<task>]-<agent>-s<seed>``: where `metarl train` puts a run without ``--out``."""
    return Path("runs") / f"{label.replace('/', '-')}-{agent}-s{seed}"


def max_seconds(minutes: float | None) -> float | None:
    """``--max-minutes`` in seconds (None: no limit); a one-line error unless a positive finite number."""
    if minutes is not None and not (0 < minutes < math.inf):
        raise UsageError(f"--max-minutes must be a positive number of minutes, got {minutes}: give e.g. "
                         "--max-minutes 30 (or leave it out for no time limit)")
    return None if minutes is None else 60 * minutes


def load_config(run_dir: str | Path) -> RunConfig:
    """The :class:`RunConfig` of a run directory; a one-line error if it has none this version can read."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.exists():
        raise UsageError(f"{run_dir} is not a metarl run directory (no config.json): pass one written by "
                         "`metarl train`")
    obj = _config_json(path)
    if obj is None:
        raise UsageError(f"{path} is not a metarl run config (unreadable, or not what `metarl train` "
                         "writes): pass a run directory written by `metarl train`")
    obj.pop("resolved", None)
    try:
        return RunConfig.from_json(obj)
    except TypeError as e:
        raise UsageError(f"{path} doesn't fit this metarl version's run config ({e}): retrain, or use the "
                         "metarl version that wrote it") from None


def _config_json(path: Path) -> dict | None:
    """``config.json`` as written by `metarl train`, or None if it isn't one (unparsable, other keys)."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    ok = isinstance(obj, dict) and isinstance(obj.get("trainer"), dict) and {"benchmark", "agent"} <= set(obj)
    return obj if ok else None


def prepare_dir(out: Path, force: bool = False, lock: RunLock | None = None) -> None:
    """Make ``out`` an empty, writable run directory. An existing non-empty one is refused unless
    ``force`` (``--force``), which empties it only if it is a metarl run directory. ``lock`` (``out``'s
    :class:`~metarl.runlock.RunLock`) is taken before anything there is deleted or written: a run in
    progress is never replaced."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a directory path")
    existing = out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir())
    if existing:
        ours = _config_json(out / CONFIG_NAME) is not None
        if not force and not ours:
            raise UsageError(f"--out {out} is a folder that already holds files and is not a metarl run directory "
                             "(no config.json written by `metarl train`): choose another --out")
        if not force:
            raise UsageError(f"run directory {out} already exists: add --resume to continue it or --force to "
                             "replace it")
        if not ours:  # missing, unreadable or someone else's
            raise UsageError(f"--force refuses to delete {out}: it is not a metarl run directory (no "
                             "config.json written by `metarl train`); choose another --out")
        foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if not _ours(p.name))
        if foreign:
            listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise UsageError(f"--force replaces only what metarl wrote, and {out} also holds {listed}: move "
                             f"{'it' if len(foreign) == 1 else 'them'} out of the run directory, "
                             "or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot write to --out {out} ({e.strerror}): choose a writable directory") from None
    problem = unwritable(out)
    if problem:
        raise UsageError(f"cannot write to --out {out} ({problem}): choose a writable directory")
    if lock is not None:
        lock.acquire("replace" if existing else "start a run in")
    for path in out.iterdir() if existing else ():
        if path.name == LOCK_NAME:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


_WRITTEN = (CONFIG_NAME, "checkpoint.pt", "progress.csv", "tb", "learning_curve.png", LOCK_NAME, "eval*.json",
            "trial-*.png", "videos")
RUN_FILES = (*_WRITTEN, *(f".{name}.*" for name in _WRITTEN), ".write-test.*")
"""What metarl writes into a run directory, as :func:`fnmatch` patterns: ``--force`` deletes only these. A
temporary file that a killed write left is named after its target (``.checkpoint.pt.k3j2x``, from
:func:`metarl.files.atomic_write`) or is :func:`unwritable`'s probe; other dotfiles (``.env.local``) are
the user's."""


def _ours(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILES)


def unwritable(directory: Path) -> str | None:
    """Why no file can be created in ``directory`` (``"Read-only file system"``, ``"Permission denied"``),
    or None if one can: checked before work whose result would then be lost."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=directory)
    except OSError as e:
        return e.strerror or type(e).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def config_text(config: RunConfig, bench: Benchmark, agent: Any, device: str) -> str:
    """``config.json``'s text: ``config`` and the ``resolved`` section (device, rewards, metarl version, git
    commit, the agent's whole config), so a run says what trained it after defaults change."""
    from metarl.provenance import git_commit

    resolved = {"device": device, "reward_version": bench.reward_version, "metarl": __version__,
                "git_commit": git_commit(), "agent_config": agent_config(agent)}
    return json.dumps({**asdict(config), "resolved": resolved}, indent=2) + "\n"


def write_config(out: str | Path, config: RunConfig, bench: Benchmark, agent: Any, device: str) -> None:
    """Write ``out/config.json`` (atomically; see :func:`config_text`)."""
    text = config_text(config, bench, agent, device)
    with atomic_write(Path(out) / CONFIG_NAME) as f:
        f.write(text)


def record_resume(path: Path, env_steps: int) -> None:
    """Append this resume's code commit and starting env step to ``resolved.resumes`` in the run's
    ``config.json`` (written atomically), so a run trained by more than one commit says which did what."""
    from metarl.provenance import git_commit

    obj = json.loads(path.read_text())
    resumes = obj.setdefault("resolved", {}).setdefault("resumes", [])
    if resumes and resumes[-1]["env_steps"] == env_steps:  # that resume stopped before its first iteration
        resumes.pop()
    resumes.append({"env_steps": env_steps, "git_commit": git_commit()})
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def agent_as_saved(name: str, bench: Benchmark, device: str, options: dict, saved_state: dict) -> Any:
    """The agent with ``options``, and for every other option the value its checkpoint was trained with.

    config.json keeps only the options given on the command line; agents also save their whole config
    in the checkpoint (``saved_state["config"]``). Options left at their default take the saved value,
    so a run is resumed and evaluated as it was trained even after a default has changed (e.g. MAML's
    ``inner_steps``). Options the agent no longer has are ignored.
    """
    agent = make_agent(name, bench, device=device, **options)
    saved = saved_state.get("config") if isinstance(saved_state, dict) else None
    current = getattr(agent, "cfg", None)
    if not isinstance(saved, dict) or not is_dataclass(current):
        return agent
    known = {f.name for f in fields(current)}
    pinned = {k: v for k, v in saved.items() if k in known and k not in options and getattr(current, k) != v}
    if not pinned:
        return agent
    try:
        return make_agent(name, bench, device=device, **pinned, **options)
    except UsageError as e:  # options another agent saved: not this run's checkpoint
        raise UsageError(f"the checkpoint's saved agent config doesn't fit the {name} agent ({e}): {FOREIGN}") from None


FOREIGN = ("the checkpoint comes from another run (another agent, family or options: copied in?) or from a metarl "
           "version that built this agent otherwise; put the run's own checkpoint back, or use the version that "
           "wrote it (config.json's resolved.git_commit)")
"""The end of every message about a checkpoint that does not fit its run directory."""


def check_checkpoint(saved: dict, config: RunConfig, bench: Benchmark, path: Path, tasks: bool = True) -> None:
    """A one-line :class:`UsageError` if checkpoint ``saved`` (as :func:`metarl.checkpoint.load` read it from
    ``path``) was not trained by the run ``config`` describes: another agent or family (the ``origin`` that
    checkpoints record), or other tasks (their digests; ``tasks=False``: not compared, e.g. for an evaluation
    with other family options)."""
    from metarl.evaluator import tasks_digest

    origin = saved.get("origin")
    if isinstance(origin, dict) and (origin.get("agent"), origin.get("benchmark")) != (config.agent, bench.label):
        raise UsageError(f"{path} was written by a {origin.get('agent')} run on {origin.get('benchmark')}, but "
                         f"config.json describes {config.agent} on {bench.label}: put this run's own checkpoint "
                         "back, or use the run directory it came from")
    digests = saved.get("tasks")
    if not tasks or not isinstance(digests, dict):
        return
    now = {"train": tasks_digest(list(bench.train.tasks)), "test": tasks_digest(bench.test.evaluation_tasks())}
    for split, digest in digests.items():
        if now.get(split, digest) != digest:
            raise UsageError(f"{path} was trained on other {split} tasks than {bench.label} (seed "
                             f"{config.trainer.seed}, its options) gives now (tasks digest {digest} vs {now[split]}): "
                             f"another run's checkpoint, or the family's code or data changed; {FOREIGN}")


class Trained(NamedTuple):
    """A trained run as :func:`load_trained` reads it."""

    config: RunConfig
    benchmark: Benchmark
    agent: MetaAlgorithm
    """With the checkpoint's weights."""
    env_steps: int | None
    """Env steps those weights trained for (None if the checkpoint doesn't say)."""


def load_trained(run_dir: str | Path, device: str = "auto", agent_overrides: dict | None = None,
                 env_overrides: dict | None = None) -> Trained:
    """Config, benchmark and agent (weights from the checkpoint) of a run directory. ``agent_overrides``
    replace saved agent options (e.g. ``inner_lr=0`` for an ablation), ``env_overrides`` saved family
    options (e.g. ``test=extrapolate``: another held-out split)."""
    from metarl import checkpoint
    from metarl.seeding import resolve_device

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    if env_overrides:
        cfg = replace(cfg, env_options={**cfg.env_options, **env_overrides})
    bench = cfg.make_benchmark()
    ckpt = run_dir / checkpoint.CHECKPOINT_NAME
    if not ckpt.exists():
        raise UsageError(f"{run_dir} has no {checkpoint.CHECKPOINT_NAME}: the run never checkpointed; "
                         "train it first")
    saved = checkpoint.load(ckpt)
    check_checkpoint(saved, cfg, bench, ckpt, tasks=not env_overrides)
    state = saved.get("algorithm", {})
    trained = saved.get("trainer", {}).get("env_steps") if isinstance(saved.get("trainer"), dict) else None
    agent = agent_as_saved(cfg.agent, bench, str(resolve_device(device)),
                           {**cfg.agent_options, **(agent_overrides or {})}, state)
    try:
        agent.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as e:
        hint = ("drop the --agent-opt or --env-opt that changes the network's shape"
                if agent_overrides or env_overrides else FOREIGN)
        detail = str(e).strip().splitlines()
        raise UsageError(f"{ckpt} does not fit the {cfg.agent} agent built from config.json "
                         f"({detail[-1].strip() if detail else type(e).__name__}): {hint}") from None
    return Trained(cfg, bench, agent, trained if isinstance(trained, int) else None)


def already_evaluated(path: Path, env_steps: int, digest: str) -> bool:
    """``path`` holds a final evaluation written after ``env_steps`` of training, on the held-out tasks
    whose :func:`metarl.evaluator.tasks_digest` is ``digest``."""
    try:
        obj = json.loads(path.read_text())
        return obj.get("trained_env_steps") == env_steps and obj.get("tasks_digest") == digest
    except (OSError, ValueError, AttributeError):
        return False


def read_eval(path: Path) -> dict:
    """An evaluation JSON object from ``path``: a file, or a run directory's ``eval.json``."""
    path = Path(path)
    if path.is_dir():
        if not (path / "eval.json").is_file() and not (path / CONFIG_NAME).is_file():
            raise UsageError(f"{path} is not a run directory (no config.json): give an eval*.json file or a "
                             "run directory written by `metarl train`")
        if not (path / "eval.json").is_file():
            others = sorted(p.name for p in path.glob("eval*.json"))
            raise UsageError(f"{path} has no eval.json (the official evaluation)"
                             + (f"; give one of its files instead: {', '.join(others)}" if others else
                                f": run `metarl eval {path}` first"))
        path = path / "eval.json"
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist: give an eval*.json file or a run directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path} is not an evaluation JSON ({e}): give an eval*.json file or a run "
                         "directory") from None
    if not isinstance(obj, dict) or "per_goal" not in obj or "per_task" not in obj:
        raise UsageError(f"{path} is not an evaluation JSON (no per_goal/per_task): give an eval*.json file "
                         "written by `metarl eval` or `metarl train`")
    return obj


RESERVED = {"--env-opt": {"seed": "--seed", "task": "--task", "reward_version": "--reward-version"},
            "--agent-opt": {"device": "--device"}}
"""Options with a flag of their own: ``parse_options`` refuses them under ``--env-opt``/``--agent-opt``."""

_JSON_WORDS = {"true": True, "false": False, "null": None}


def parse_options(pairs: list[str], flag: str, example: str) -> dict:
    """``["hidden=128", "first_order=True"]`` -> ``{"hidden": 128, "first_order": True}``.

    Values are Python literals or JSON's ``true``/``false``/``null`` (strings otherwise); tuples become
    lists, as they would after a round trip through ``config.json``; values JSON can't hold (sets, bytes,
    complex) are rejected. ``flag`` and ``example`` name the option in errors (``--agent-opt``,
    ``hidden=128``).
    """
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {pair!r} is not KEY=VALUE: give e.g. {flag} {example}")
        if key in out:
            raise UsageError(f"{flag} {key}= is given twice ({out[key]!r}, then {text!r}): give it once")
        if key in RESERVED.get(flag, {}):
            raise UsageError(f"{flag} {key}=... is not a family/agent option: use {RESERVED[flag][key]}")
        try:
            value = _JSON_WORDS[text.strip()] if text.strip() in _JSON_WORDS else ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        value = _jsonable(value)
        if value is None and text.strip() not in ("None", "null", ""):
            raise UsageError(f"{flag} {pair!r}: the value must be a number, bool, None, string, list or dict")
        out[key] = value
    return out


def _jsonable(value: Any) -> Any:
    """``value`` with tuples as lists if JSON can hold it, else None."""
    if isinstance(value, tuple):
        value = list(value)
    try:
        return json.loads(json.dumps(value)) if not isinstance(value, float) else value
    except (TypeError, ValueError):
        return None
