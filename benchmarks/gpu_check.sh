#!/usr/bin/env bash
# The GPU checks, as one script for a lent accelerator (about 7-9 minutes on one H100):
# the log-mel front end (goal >= 20,000 clips/s), training/inference throughput per model
# (goal: CNN14 in bf16, end to end from the cache, >= 1,000 clips/s), and the 2-rank DDP
# tests (two processes sharing the one GPU, NCCL where it allows it, else gloo on the CPU).
# Results are written under $OUT (or benchmarks/results/) with the card's name; copy them into
# benchmarks/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu_card.txt"
timeout 150 python benchmarks/bench_frontend.py --device cuda --batch 2048 --repeat 5 \
    --baseline-clips 32 --out "$out/frontend_cuda.md" 2>&1 | tail -20
timeout 300 python benchmarks/bench_training.py --device cuda --repeat 3 \
    --out "$out/training_cuda.md" 2>&1 | tail -30
# the DDP tests: each rank's own augmentation stream, bit-identical resume, identical weights
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_training.py \
    -k "two_ranks or two_process" 2>&1 | tail -5 | tee "$out/ddp_check.txt"
