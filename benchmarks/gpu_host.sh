#!/usr/bin/env bash
# Device checks on an offline GPU host (see ../shared/gpu-host/README.md), in one call:
# single-env fast vs upstream speed, vector scaling to 16 workers, and an RL2 ML10 CUDA run.
# Needs .whl/ with the wheels from fetch-wheels.sh plus metarl's own wheel (pip wheel --no-deps -w .whl .).
# Usage (device tool): bash benchmarks/gpu_host.sh   -- results land in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1  # no MUJOCO_GL: nothing renders, and egl would need PyOpenGL
{ nvidia-smi -L; nproc; python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'; } > "$OUT/machine.txt" 2>&1
cd benchmarks
timeout 100 python3 fast_env.py --skip-parity --steps 2000 --repeats 1 --out "$OUT/fast_env-gpu-host.json" 2>&1 | tee "$OUT/log.txt"
timeout 200 python3 vector_scaling.py --max-workers "$(nproc)" --steps 10000 --episodes 1 \
  --out "$OUT/vector_scaling-gpu-host.json" 2>&1 | tee -a "$OUT/log.txt"
cd /tmp  # not the repo root: its metarl/ source folder would shadow the installed package
timeout 230 python3 -m metarl train ML10 --agent rl2 --device cuda --backend shm --num-envs 20 \
  --max-minutes 2 --steps 100000000 --eval-tasks 2 --out /tmp/ml10-rl2 2>&1 | tail -30 | tee -a "$OUT/log.txt"
for f in eval.json progress.csv config.json; do cp /tmp/ml10-rl2/$f "$OUT/ml10-rl2-$f" 2>/dev/null; done
