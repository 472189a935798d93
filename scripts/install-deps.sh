#!/usr/bin/env bash
# Installs what grok.c needs to build and test on Debian/Ubuntu (run as root
# or with sudo). Safe to run again; installs nothing when all is there.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --build  only what building and running grok needs
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libcjson-dev libedit-dev)
[ "${1:-}" = "--build" ] ||
  pkgs+=(clang libclang-rt-14-dev python3 python3-numpy sentencepiece chromium tmux)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ "${1:-}" = "--build" ] && exit 0
# Node.js (for the llama.cpp peer in the parity tests) is optional: the
# llama.cpp tests are skipped without it.
command -v node >/dev/null || echo "note: node not found; llama.cpp parity tests will be skipped" >&2
