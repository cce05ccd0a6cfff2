#!/usr/bin/env bash
# All GPU figures of issue 15 in one run, one table (bench/bench_gpu.py says what each row is).
#
#   bench/bench_gpu.sh                       # CUDA when there is one; < 8 min on an H100
#   bench/bench_gpu.sh --device cpu --smoke  # a few seconds, any machine (tests/test_bench_gpu.py)
#
# Needs only torch, numpy, scipy, pandas, pyarrow and safetensors, and the small store built once
# on a full install and carried along with the tree (it is in an ignored folder):
#   python bench/bench_store.py build --out build/gpu_store
# Other options go to bench_gpu.py (--store, --workers N, --budget-s, --work DIR).
# Writes the table and its JSON to $OUT (the device machine's result folder) or bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
dest="${OUT:-bench/results}"
mkdir -p "$dest"
stamp="$(date +%Y%m%d-%H%M%S)"
# the script keeps to --budget-s (420 s by default); the timeout is the hard stop before 8 min
timeout --kill-after=10 470 "$PYTHON" bench/bench_gpu.py --json "$dest/gpu-$stamp.json" "$@" \
  2>&1 | tee "$dest/gpu-$stamp.txt"
exit "${PIPESTATUS[0]}"
