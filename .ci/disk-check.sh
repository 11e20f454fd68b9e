#!/usr/bin/env bash
# Before a fresh install: say in one line when the disk cannot hold the virtual environment.
# PyTorch's CUDA build alone is about 5.5 GB; pip unpacks beside it in $TMPDIR.
# usage: disk-check.sh VENV_DIR NEEDED_GB
set -euo pipefail
venv="$1"; need_gb="$2"
# an environment that already holds torch needs little more: nothing to check
if compgen -G "$venv/lib/python3*/site-packages/torch" >/dev/null; then exit 0; fi
check() {  # $1 = a path; fails with one line when its filesystem has less than need_gb free
  local dir free_kb
  dir=$(realpath -m "$1")
  while [ ! -d "$dir" ]; do dir=$(dirname "$dir"); done  # the nearest folder that exists
  free_kb=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
  if [ "$free_kb" -lt $((need_gb * 1024 * 1024)) ]; then
    echo "evograph: installing needs about ${need_gb} GB free on the disk holding $dir;" \
      "$((free_kb / 1024)) MB free — free some space and run make again" >&2
    exit 1
  fi
}
check "$venv"
check "${TMPDIR:-/tmp}"
