#!/usr/bin/env bash
# Split one download across the jobs of an array, then join the parts. Offline this uses the
# demo's loopback stand-ins; on a cluster replace `audioset demo` with
# `audioset download --split unbalanced --shard $SLURM_ARRAY_TASK_ID/$N --root /shared/audioset`.
# Run from the repository root:
#   AUDIOSET_CSV_BASE_URL=../shared/data/segments bash docs/examples/job_array.sh
set -euo pipefail
N=3
ROOT="$(mktemp -d)"
for i in $(seq 1 "$N"); do          # on a cluster these run at the same time, one per job
    audioset demo --root "$ROOT" --clips 24 --shard "$i/$N"
done
audioset merge --root "$ROOT" --split demo
audioset cache --root "$ROOT" --split demo
