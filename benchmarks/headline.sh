#!/usr/bin/env bash
# The seed sweeps behind the README's headline table and the agent pages (issue 28), then one report.
# Each sweep resumes where it stopped (finished seeds are skipped), so run this in pieces:
#   benchmarks/headline.sh toysides      # ~1-3 min per seed on one core
#   benchmarks/headline.sh driving       # ~5-10 min per seed and agent on one core
#   benchmarks/headline.sh ml1           # ~1 hour per seed on one core
#   benchmarks/headline.sh collect       # copies what the report reads into benchmarks/results/headline/runs
#   benchmarks/headline.sh report        # benchmarks/results/headline/{report.md,report.json,*.png}, then the
#                                        # README's and agent pages' tables (benchmarks/headline_table.py)
# Run dirs go to $RUNS (default ~/metarl-runs: outside the work tree). JOBS=2 trains two seeds at once.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-$HOME/metarl-runs}"
JOBS="${JOBS:-1}"
metarl=(.venv/bin/python -m metarl)
sweep() {  # sweep NAME BENCHMARK AGENT SEEDS [train flags...]
  local name=$1 bench=$2 agent=$3 seeds=$4; shift 4
  "${metarl[@]}" train "$bench" --agent "$agent" --seeds "$seeds" --jobs "$JOBS" --out "$RUNS/$name" "$@"
}
case "${1:-}" in
  toysides)
    sweep ToySides-rl2 ToySides rl2 0-4 --steps 150000 --num-envs 16 --agent-opt hidden=128 --agent-opt lr=3e-3 \
      --agent-opt minibatch_chunks=8 --agent-opt epochs=4 --agent-opt trial_episodes=10
    sweep ToySides-maml ToySides maml 0-4 --steps 48000 --num-envs 10 --agent-opt hidden=32,32 \
      --agent-opt inner_lr=0.5 --agent-opt normalize_inner_adv=true
    sweep ToySides-pearl ToySides pearl 0-4 --steps 20000 --agent-opt hidden=64,64 --agent-opt encoder_hidden=64,64 \
      --agent-opt meta_batch=8 --agent-opt batch_size=64 --agent-opt context_size=32 \
      --agent-opt updates_per_step=0.5 --agent-opt learning_starts=200 --agent-opt lr=1e-3
    sweep ToySides-zero-shot ToySides zero-shot 0-4 --steps 30000 --num-envs 16 --agent-opt lr=3e-3 \
      --agent-opt minibatch_size=256 --agent-opt episodes=10 ;;
  driving)  # budgets for 5 seeds of 4 agents on 2 cores in ~1.5 hours (JOBS=2); the 1-seed results had 15-25 min
    sweep Driving-rl2 Driving rl2 0-4 --steps 30000000 --max-minutes 10 --num-envs 20
    sweep Driving-pearl Driving pearl 0-4 --steps 3000000 --max-minutes 8 --num-envs 10 --agent-opt hidden=128,128 \
      --agent-opt encoder_hidden=128,128 --agent-opt meta_batch=8 --agent-opt batch_size=64 \
      --agent-opt context_size=64 --agent-opt updates_per_step=0.5 --agent-opt lr=1e-3
    sweep Driving-zero-shot Driving zero-shot 0-4 --steps 30000000 --max-minutes 5 --num-envs 20
    sweep Driving-maml Driving maml 0-4 --steps 30000000 --max-minutes 8 --num-envs 20
    for run in "$RUNS"/Driving-*/seed-*; do  # the extrapolation split: the same checkpoints, other held-out tasks
      [ -f "$run/eval-test=extrapolate.json" ] || "${metarl[@]}" eval "$run" --env-opt test=extrapolate
    done ;;
  ml1)
    sweep ML1-reach-v3-rl2 ML1 rl2 0-2 --task reach-v3 --steps 6000000 --max-minutes 80 --num-envs 10
    sweep ML1-reach-v3-maml ML1 maml 0-2 --task reach-v3 --steps 30000000 --max-minutes 55 --eval-every 2000000 ;;
  collect)  # each finished seed's small files (config, evaluations, the curves the report reads) into the repo
    keys=$(.venv/bin/python -c "from metarl.report.inputs import CURVE_KEYS; print('|'.join(CURVE_KEYS))")
    for run in "$RUNS"/ToySides-*/seed-* "$RUNS"/Driving-*/seed-* "$RUNS"/ML1-*/seed-*; do
      [ -f "$run/eval.json" ] || continue
      dest=benchmarks/results/headline/runs/$(basename "$(dirname "$run")")/$(basename "$run")
      mkdir -p "$dest" && cp "$run"/config.json "$run"/eval*.json "$dest"/
      [ ! -f "$run/progress.csv" ] || awk -F, -v keys="^(key|$keys)\$" '$2 ~ keys' "$run/progress.csv" > "$dest/progress.csv"
    done ;;
  report)  # from the collected copies, so a fresh clone regenerates the report and the tables
    "${metarl[@]}" report benchmarks/results/headline/runs/* --out benchmarks/results/headline
    .venv/bin/python benchmarks/headline_table.py ;;
  *) echo "usage: benchmarks/headline.sh toysides|driving|ml1|collect|report" >&2; exit 2 ;;
esac
