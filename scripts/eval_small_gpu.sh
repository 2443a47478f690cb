#!/usr/bin/env bash
# Issue 6's GPU proof, in stages that each fit a 10-minute command (run them in this order):
#   bash scripts/eval_small_gpu.sh data            # 16 train shards + held-out set in parallel,
#                                                  # then the VAE base (pretrain_small_vae.py)
#   bash scripts/eval_small_gpu.sh train 1200 570  # train; at most 1200 s of training in all,
#                                                  # at most 570 s in this call (run it again to
#                                                  # continue: resume = "auto")
#   bash scripts/eval_small_gpu.sh eval            # trained (newest checkpoint) vs untrained
# Config: configs/eval_small_gpu.toml. Outputs: runs/eval_gpu/ (eval.json, eval_images/).
# Each stage skips what is already done. Needs ICT-FaceKit (GEN3DFACE_ASSETS, default
# ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=configs/eval_small_gpu.toml
OUT=runs/eval_gpu
export GEN3DFACE_ASSETS=${GEN3DFACE_ASSETS:-$(cd .. && pwd)/shared/data}
mkdir -p "$OUT"
case "${1:-}" in
  data)
    t0=$(date +%s)
    for s in $(seq 0 15); do
      if [ ! -f "$OUT/train_data_$s/dataset.json" ]; then
        OMP_NUM_THREADS=1 python -m gen3dface.backend.synth "$OUT/train_data_$s" --identities 40 \
          --views 24 --resolution 64 --seed "$s" --overwrite > "$OUT/synth_$s.log" 2>&1 &
      fi
    done
    wait
    if [ ! -f "$OUT/heldout_data/dataset.json" ]; then
      python scripts/eval_mvdiff.py synth-heldout --config "$CFG" --out "$OUT/heldout_data" \
        --identities 16 --overwrite
    fi
    echo "data: $(( $(date +%s) - t0 )) s"
    if [ ! -f "$OUT/base/vae/config.json" ]; then
      python scripts/pretrain_small_vae.py --config "$CFG" --steps 3000 --batch 64 --lr 1e-3
    fi
    ;;
  train)
    budget=${2:-1200}; per_call=${3:-570}
    used=$(cat "$OUT/train_seconds" 2>/dev/null || echo 0)
    left=$(( budget - used )); [ "$left" -gt "$per_call" ] && left=$per_call
    if [ "$left" -le 0 ]; then echo "training budget of $budget s used up"; exit 0; fi
    t0=$(date +%s)
    timeout "$left" gen3dface train "$CFG" 2>&1 | tee -a "$OUT/train.log" || true
    echo $(( used + $(date +%s) - t0 )) > "$OUT/train_seconds"
    echo "training wall clock so far: $(cat "$OUT/train_seconds") s of $budget s"
    ;;
  eval)
    python scripts/eval_mvdiff.py eval --checkpoint "$OUT/run" --untrained \
      --data "$OUT/heldout_data" --sampler ddim --steps 50 --guidance 3 \
      --json "$OUT/eval.json" --save-images "$OUT/eval_images"
    ;;
  *)
    echo "usage: $0 data | train [BUDGET_S [PER_CALL_S]] | eval" >&2; exit 2 ;;
esac
