#!/usr/bin/env bash
# Split one download across the jobs of an array, then join the parts. Offline this uses the
# demo's loopback stand-ins; on a cluster each job runs one part at the same time, e.g. with
# Slurm (array tasks numbered from 0, hence --shard-from-zero):
#   #SBATCH --array=0-15
#   audioset download --split unbalanced --root /shared/audioset \
#       --shard "$SLURM_ARRAY_TASK_ID/16" --shard-from-zero
# Without --shard-from-zero, --shard I/N counts from 1 (1/16 ... 16/16) and 0/16 is refused.
# Run from the repository root:
#   AUDIOSET_CSV_BASE_URL=../shared/data/segments bash docs/examples/job_array.sh
set -euo pipefail
N=3
ROOT="$(mktemp -d)"
for i in $(seq 0 $((N - 1))); do     # as SLURM_ARRAY_TASK_ID runs for --array=0-2
    audioset demo --root "$ROOT" --clips 24 --shard "$i/$N" --shard-from-zero
done
# merge refuses while a part is missing (--allow-partial merges the parts found so far)
audioset merge --root "$ROOT" --split demo
audioset cache --root "$ROOT" --split demo
