#!/usr/bin/env bash
# Device checks on an offline GPU host (see ../shared/gpu-host/README.md), in one call:
# `metarl bench envs` on all cores (single-env upstream vs fast, vector scaling up to the core count,
# RSS growth of the shm workers over 1M steps) and a CUDA smoke run of RL2 on the Driving family.
# Needs .whl/ with the wheels from fetch-wheels.sh plus metarl's own wheel (pip wheel --no-deps -w .whl .).
# Usage (device tool): METARL_GIT_COMMIT=<sha> bash benchmarks/gpu_host.sh   -- results land in $OUT.
# Every step's timeout is cut to what is left of BUDGET seconds (default 570: one device call is at most 600 s,
# and what the steps had measured is kept); a step that would get under 30 s is skipped.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
REPO=$PWD
limit() { local left=$(( ${BUDGET:-570} - SECONDS )); left=$(( left < 1 ? 1 : left ))  # timeout 0 = no limit
          echo $(( left < $1 ? left : $1 )); }  # seconds for a step
skip() { [ "$(limit $1)" -lt 30 ] && echo "skipped (budget): $2" | tee -a "$OUT/log.txt"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1  # no MUJOCO_GL: nothing renders, and egl would need PyOpenGL
{ nvidia-smi -L; nproc; lscpu | grep 'Model name'; python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'; } > "$OUT/machine.txt" 2>&1

cd /tmp  # not the repo root: its metarl/ source folder would shadow the installed package
# BENCH_SECTIONS=vector RSS_STEPS=0 re-measures only the vector scaling (a few minutes); SLOTS_PER_WORKER=5
# and WORKER_COUNTS=1,4,16 pick the slots per process and the rows (the JSON is rewritten after each row).
timeout $(limit ${BENCH_TIMEOUT:-420}) python3 -m metarl bench envs --steps 2000 --repeats 1 --rss-steps ${RSS_STEPS:-1000000} \
  --slots-per-worker ${SLOTS_PER_WORKER:-2} ${WORKER_COUNTS:+--worker-counts $WORKER_COUNTS} \
  --sections ${BENCH_SECTIONS:-single,vector,driving} --json "$OUT/bench_envs-gpu-host.json" 2>&1 | grep --line-buffered -v Warn | tee "$OUT/log.txt"

# SHM_VARIANTS_WORKERS=16: the shm backend's wake-up variants (spin length, parent stepping a block) at that
# many workers, 2 and 5 slots each, one 1,000-step measurement per variant (~2-3 minutes at 16 workers).
[ -n "${SHM_VARIANTS_WORKERS:-}" ] && ! skip ${VARIANTS_TIMEOUT:-180} shm_variants && \
  timeout $(limit ${VARIANTS_TIMEOUT:-180}) python3 "$REPO/experiments/shm_backend/shm_variants.py" \
  --workers $SHM_VARIANTS_WORKERS --slots-per-worker 2 5 --episodes 2 --repeats 1 --tag host \
  --out "$OUT/shm_variants-host.json" 2>&1 | grep --line-buffered -v Warn | tee -a "$OUT/log.txt"

# TRAIN_SPEED=1: MAML meta-training on ML10 with 80 slots in 16 shm workers, 2 episodes before and 2 after
# adapting (160k env steps per iteration), 2 iterations after a warm-up: env steps/s while collecting and per
# iteration including the meta-update (the JSON is rewritten after each iteration).
[ "${TRAIN_SPEED:-0}" = 1 ] && ! skip ${TRAIN_TIMEOUT:-150} train_speed && \
  timeout $(limit ${TRAIN_TIMEOUT:-150}) python3 "$REPO/benchmarks/train_speed.py" ML10 --agent maml \
  --agent-opt episodes=2 --num-envs 80 --iterations 2 --variant backend=shm,num_workers=16 --tag host \
  --out "$OUT/train_speed-host.json" \
  2>&1 | grep --line-buffered -v Warn | tee -a "$OUT/log.txt"

[ "${CUDA_SMOKE:-1}" = 0 ] && exit 0  # CUDA_SMOKE=0: the bench only (saves ~100 s of device time)
skip 100 "CUDA smoke run" && exit 0
timeout $(limit 100) python3 -m metarl train Driving --agent rl2 --device cuda --num-envs 64 --max-minutes 1 \
  --steps 100000000 --eval-tasks 5 --out /tmp/drv-rl2 2>&1 | tail -8 | tee -a "$OUT/log.txt"
