#!/usr/bin/env bash
# The GPU checks, as one script for a lent accelerator (about 6-8 minutes on one H100):
# the log-mel front end (goal >= 20,000 clips/s) and training/inference throughput per model
# (goal: CNN14 training end to end from the cache >= 1,000 clips/s). Results are written under
# $OUT (or benchmarks/results/) with the card's name; copy them into benchmarks/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu_card.txt"
timeout 150 python benchmarks/bench_frontend.py --device cuda --batch 2048 --repeat 5 \
    --baseline-clips 32 --out "$out/frontend_cuda.md" 2>&1 | tail -20
timeout 360 python benchmarks/bench_training.py --device cuda --repeat 3 \
    --out "$out/training_cuda.md" 2>&1 | tail -30
