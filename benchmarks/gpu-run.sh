#!/usr/bin/env bash
# What a GPU session runs, in one go: the four-variant study (`make all-variants`), `make bench`
# on the GPU, then a small seed/hyperparameter sweep. Results land in $OUT (default gpu-out/).
# Usage on a machine whose python3 already has torch and the other dependencies:
#   bash benchmarks/gpu-run.sh
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, typer, onnxruntime; print('torch', torch.__version__, 'typer', \
typer.__version__, 'onnxruntime', onnxruntime.__version__, 'cuda', torch.cuda.is_available())"

SECONDS=0
make --no-print-directory all-variants SETUP= REGCLI="python3 -m regcli" PYTHON_BIN=python3 \
    2>&1 | tee "$out/all-variants.log"
echo "make all-variants: ${SECONDS} s wall" | tee -a "$out/all-variants.log"

python3 benchmarks/bench.py 2>&1 | tee "$out/bench.log"
tar czf "$out/study.tgz" models images README.md benchmarks/results-*.json

timeout "${SWEEP_SECONDS:-200}" python3 benchmarks/sweep.py --lr 0.1 0.2 --dropout 0.05 0.02 \
    --seeds 1 2 --jobs 16 --out "$out/sweep.json" 2>&1 | tail -20 | tee "$out/sweep.log"
