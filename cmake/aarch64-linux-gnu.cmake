# Cross-compiling grok.c for 64-bit ARM Linux with Debian's toolchain
# (gcc-aarch64-linux-gnu) and the arm64 libraries installed through Debian
# multiarch (libmicrohttpd-dev:arm64, libcjson-dev:arm64, libedit-dev:arm64;
# scripts/install-deps.sh --aarch64). `make aarch64` uses it; the binaries run
# here under qemu-user (`make check-aarch64`), which is also the emulator
# ctest wraps the tests in.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
# Headers and libraries: the cross compiler's own, plus multiarch's
# /usr/lib/aarch64-linux-gnu (found through the arm64 .pc files below).
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu /usr)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
# ctest runs the test binaries through qemu-user (the CPU model comes from
# $QEMU_CPU: make check-aarch64 runs the suite with max and cortex-a53).
# Multiarch put the arm64 loader and libraries at their native paths, so
# qemu needs no -L.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
