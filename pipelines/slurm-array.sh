#!/bin/sh
# pipelines/slurm-array.sh: the same per-slide build as pipelines/fanout,
# one slide per Slurm array task.
#
#   n=$(wc -l < slides.txt)
#   sbatch --array=1-$n%64 pipelines/slurm-array.sh slides.txt ds MODEL=uni.safetensors ...
#
# Task i builds line i of the list. Stages are written under temporary names
# and renamed on success, so resubmitting the array redoes only failed or
# missing slides. When all tasks are done, train and index on one node:
#   make -f pipelines/dataset.mk OUT=ds SLIDES="$(cat slides.txt)" ...
#SBATCH --job-name=eosin-slides
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --output=%x-%A_%a.log
set -eu
[ $# -ge 2 ] || { echo "usage: slurm-array.sh LIST OUT [MAKEVARS...]" >&2; exit 2; }
list=$1 out=$2
shift 2
i=${SLURM_ARRAY_TASK_ID:?not running as a Slurm array task (SLURM_ARRAY_TASK_ID unset)}
slide=$(sed -n "${i}p" "$list")
[ -n "$slide" ] || { echo "slurm-array.sh: no line $i in $list" >&2; exit 2; }
here=${EOSIN_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
id=$(basename "$slide"); id=${id%.*}
exec make --no-print-directory -f "$here/pipelines/dataset.mk" OUT="$out" SLIDES="$slide" "$out/bags/$id.mpk" "$@"
