#!/usr/bin/env bash
# tests/gpu/pack-libs.sh BUILD - copies the shared libraries BUILD/grok and
# BUILD/test_backend_cuda need, but those every glibc system has, into
# BUILD/lib, so that the binaries run on a bare GPU machine (no
# libmicrohttpd, cJSON or libedit there; tests/gpu/run.sh puts BUILD/lib on
# LD_LIBRARY_PATH). cuBLAS is not copied (hundreds of MiB): the CUDA backend
# loads it at run time where the machine has it, and works without it.
set -euo pipefail
build=${1:?usage: pack-libs.sh BUILD}
mkdir -p "$build/lib"
for bin in "$build/grok" "$build/test_backend_cuda"; do
  [ -x "$bin" ] || continue
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libgcc_s.so*|libstdc++.so*|ld-linux*) ;;
      libcuda.so*|libcublas*) ;;
      *) cp -L "$lib" "$build/lib/" ;;
    esac
  done
done
echo "pack-libs: $(ls "$build/lib" | wc -l) libraries, $(du -sh "$build/lib" | cut -f1) in $build/lib"
