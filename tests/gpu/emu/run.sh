#!/usr/bin/env bash
# Builds and runs check_quant_dev.cpp (the CUDA backend's weight-reading
# device code on the CPU, against quant.c) with the host C++ compiler,
# linked with BUILD/libgrokcore.a (default build/). No GPU needed.
set -euo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd)
build=${1:-$src/build}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cuda_libs=()
if nm -A "$build/libgrokcore.a" 2>/dev/null | grep -q ' U cudaMalloc'; then
  cudadir=$(dirname "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")
  cuda_libs=(-L"$cudadir/lib64" -lcudart_static -lcublas -ldl -lrt)
fi
mapfile -t pkg < <(pkg-config --libs libmicrohttpd libcjson libedit | tr ' ' '\n' | grep -v '^$')
"${CXX:-g++}" -std=c++17 -O2 -Wall -Wextra -Werror -Wno-unused-parameter -ffp-contract=off \
  -I"$src/src" -I"$src/src/engine" -I"$src/src/engine/cpu" -I"$src/src/engine/cuda" -I"$src/src/formats" \
  "$src/tests/gpu/emu/check_quant_dev.cpp" "$build/libgrokcore.a" "${cuda_libs[@]}" "${pkg[@]}" -lpthread -lm \
  -o "$out/check_quant_dev"
"$out/check_quant_dev"
