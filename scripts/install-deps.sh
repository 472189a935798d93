#!/usr/bin/env bash
# Installs what grok.c needs to build and test on Debian/Ubuntu (run as root
# or with sudo). Safe to run again; installs nothing when all is there.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --build  only what building and running grok needs
set -euo pipefail
# macOS: the libraries from Homebrew (CMakeLists.txt finds them there).
if [ "$(uname -s)" = Darwin ]; then
  command -v brew >/dev/null || { echo "install Homebrew (https://brew.sh) first" >&2; exit 1; }
  for p in cmake pkg-config libmicrohttpd cjson libedit; do brew list "$p" >/dev/null 2>&1 || brew install "$p"; done
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libcjson-dev libedit-dev libopenmpi-dev openmpi-bin)
[ "${1:-}" = "--build" ] ||
  pkgs+=(clang libclang-rt-14-dev python3 python3-numpy sentencepiece chromium tmux
         gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
# make aarch64 / check-aarch64 link against the arm64 builds of the libraries,
# from Debian multiarch (Debian's mirrors carry arm64; on Ubuntu the arm64
# packages live on ports.ubuntu.com, which this script does not configure).
arm64=false
if [ "${1:-}" != "--build" ] && grep -qx 'ID=debian' /etc/os-release 2>/dev/null; then
  arm64=true
  pkgs+=(libmicrohttpd-dev:arm64 libcjson-dev:arm64 libedit-dev:arm64)
fi
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if $arm64 && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ "${1:-}" = "--build" ] && exit 0
$arm64 || echo "note: not Debian: the arm64 libraries for make aarch64 / check-aarch64 were not installed" >&2
# Node.js (for the llama.cpp peer in the parity tests) is optional: the
# llama.cpp tests are skipped without it.
command -v node >/dev/null || echo "note: node not found; llama.cpp parity tests will be skipped" >&2
