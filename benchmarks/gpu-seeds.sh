#!/usr/bin/env bash
# Seeds 0..SEEDS-1 of the four variants on one GPU, one process per variant running side by side
# (each process is bound by kernel launches, so the GPU has room for several). A run still going
# after LIMIT seconds is stopped by SIGTERM at a batch boundary and can be finished with --resume.
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
seeds=${SEEDS:-5}
variant() {
    timeout "${LIMIT:-3600}" python3 -m regcli train --name "$1" "${@:2}" --seeds "$seeds" \
        --quiet >"$out/$1.log" 2>&1
}
SECONDS=0
variant none &
variant l1 --l1 1e-5 &
variant l2 --weight-decay 1e-4 &
variant l1_l2 --l1 1e-5 --weight-decay 1e-4 &
wait
echo "four variants x ${seeds} seeds: ${SECONDS} s wall"
tar czf "$out/seeds.tgz" models/*/seed-* images/*_seed-*
tail -n 2 "$out"/*.log
