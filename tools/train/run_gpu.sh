#!/bin/bash
# Trains grok-nano on one CUDA GPU the way the shipped model was trained
# (an NVIDIA H200, PyTorch 2.11): bf16 matrix products, 65,536-token batches,
# and a cosine schedule fitted to a fixed wall-clock window (--end-time), then
# exports the Q8_0 GGUF. Needs the token arrays of build_data.sh in out/
# (train.npz, heldout.npz).
#   tools/train/run_gpu.sh [SECONDS]     (default 420: the window, from start)
set -e
cd "$(dirname "$0")"
T0=$(date +%s)
END=$((T0 + ${1:-420}))
PYTHONUNBUFFERED=1 python3 train.py --out out --device cuda --bf16 --seed 1 --steps 100000 --tokens 65536 \
  --lr 2e-3 --warmup 150 --min-lr-frac 0.05 --eval-every 500 --eval-dlg 1000 --ckpt-every 100000 --threads 8 \
  --end-time "$END" --config '{"n_embd":256,"n_layer":6,"n_head":8,"n_head_kv":2,"n_ff":512}' 2>&1 | tee out/train.log
python3 export.py --ckpt out/ckpt.pt --out out/grok-nano.gguf
sha256sum out/grok-nano.gguf
