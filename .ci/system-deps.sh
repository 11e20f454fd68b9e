#!/usr/bin/env bash
# Install the Debian packages evograph needs when they are missing: graphviz (`dot`, for drawings)
# and chromium (headless, for the report test). Needs root; otherwise says what to install.
set -euo pipefail
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "evograph: please install the Debian packages: ${missing[*]} (optional features need them)" >&2
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
apt-get install -y -qq "${missing[@]}" >/dev/null
