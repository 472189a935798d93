#!/bin/sh
# Runs train.py the way grok-nano was trained: niced, 2 threads, and with
# OpenBLAS instead of Debian's reference BLAS (python3-torch links the
# generic libblas.so.3, which is ~10x slower). OpenBLAS is taken from the
# libopenblas0-pthread .deb unpacked under /tmp (no system change):
#   mkdir -p /tmp/oblas && cd /tmp/oblas && apt-get download libopenblas0-pthread &&
#   dpkg -x libopenblas0-pthread_*.deb root
# Usage: tools/train/run_train.sh [train.py args...]
here=$(dirname "$0")
ob=/tmp/oblas/root/usr/lib/x86_64-linux-gnu/openblas-pthread
[ -f "$ob/libblas.so.3" ] && export LD_LIBRARY_PATH="$ob${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2
exec nice -n 10 /usr/bin/python3 "$here/train.py" "$@"
