#!/bin/sh
# pipelines/slurm-array.sh: the same per-slide build as pipelines/fanout,
# one slide per Slurm array task.
#
#   n=$(wc -l < slides.txt)
#   sbatch --array=1-$n%64 pipelines/slurm-array.sh slides.txt ds MODEL=uni.safetensors ...
#
# STAGE=shards in the environment (sbatch --export=ALL,STAGE=shards) builds
# each slide's tile index shard instead, once the head is trained.
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
[ $# -ge 2 ] || { echo "usage: slurm-array.sh LIST OUT [VAR=VALUE ...]" >&2; exit 2; }
list=$1 out=$2
shift 2
i=${SLURM_ARRAY_TASK_ID:?not running as a Slurm array task (SLURM_ARRAY_TASK_ID unset)}
slide=$(sed -n "${i}p" "$list")
[ -n "$slide" ] || { echo "slurm-array.sh: no line $i in $list" >&2; exit 2; }
# sbatch runs a copy of this script from a spool folder: find the
# repository through EOSIN_ROOT, else the folder sbatch was called from.
here=${EOSIN_ROOT:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}}
[ -r "$here/pipelines/dataset.mk" ] || { echo "slurm-array.sh: no pipelines/dataset.mk under '$here' (set EOSIN_ROOT)" >&2; exit 2; }
id=$(basename "$slide"); id=${id%.*}
case "${STAGE:-bags}" in
bags) target=$out/bags/$id.mpk ;;
shards) target=$out/shards/$id.faiss ;;
*) echo "slurm-array.sh: STAGE must be bags or shards, not '$STAGE'" >&2; exit 2 ;;
esac
exec make --no-print-directory -f "$here/pipelines/dataset.mk" OUT="$out" SLIDES="$slide" ONE_SLIDE=1 "$target" "$@"
