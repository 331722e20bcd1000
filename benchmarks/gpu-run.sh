#!/usr/bin/env bash
# What a GPU session runs, in one go (about 6 minutes on one H100 or H200), from the repository
# root, with a python3 that already has PyTorch and regcli's other dependencies:
#   1. `make bench` on the GPU (benchmarks/bench.py --device cuda): the grouped trainer's studies,
#      written to benchmarks/results-<gpu>.json;
#   2. `make sweep`: the regularization path, 14 cells x 5 seeds x 15 epochs, into models/sweep/;
#   3. the path's pruned accuracies (cached beside each model) and figures.
# What it produces lands in $OUT (default gpu-out/): the results file, logs and one tarball.
# Each step has a time limit; a sweep stopped by it keeps its last.pt files and continues later.
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONPATH=. PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

SECONDS=0
timeout "${BENCH_SECONDS:-240}" python3 benchmarks/bench.py --device cuda >"$out/bench.json" \
    2>"$out/bench.log"
echo "bench: exit $?, ${SECONDS} s"
cp benchmarks/results-*.json "$out/"

SECONDS=0
timeout "${SWEEP_SECONDS:-280}" python3 -m regcli sweep --name sweep --seeds 5 --epochs 15 \
    >"$out/sweep.log" 2>&1
echo "sweep: exit $?, ${SECONDS} s"
tail -n 4 "$out/sweep.log"

SECONDS=0
timeout "${REPORT_SECONDS:-120}" python3 -m regcli sweep --name sweep --report --device cuda \
    --quiet >"$out/path.txt" 2>&1
echo "path report: exit $?, ${SECONDS} s"
tar czf "$out/sweep.tgz" models/sweep images/sweep_*.png
ls -la "$out"
