/* device.c - choosing where a context computes: the --device names, and the
 * stand-ins for the CUDA backend's entry points when grok is built without
 * it (GROK_CUDA undefined: no nvcc, or -DGROK_CUDA=OFF), so that
 * `--device cuda` is a clear error instead of a link failure. */
#include <stdbool.h>
#include <strings.h>

#include "backend.h"
#include "forward.h"

int device_parse(const char *name) {
    if (!name) return -1;
    if (!strcasecmp(name, "cpu")) return GROK_DEVICE_CPU;
    if (!strcasecmp(name, "cuda") || !strcasecmp(name, "gpu")) return GROK_DEVICE_CUDA;
    if (!strcasecmp(name, "auto")) return GROK_DEVICE_AUTO;
    return -1;
}

#ifndef GROK_CUDA
bool cuda_built(void) { return false; }

int cuda_device_count(Error *err) {
    err_set(err, "this grok was built without CUDA (rebuild with nvcc on the PATH, or cmake -DGROK_CUDA=ON)");
    return 0;
}

Backend *backend_cuda_new(const Model *m, const BackendParams *p, Error *err) {
    (void)m;
    (void)p;
    err_set(err, "--device cuda: this grok was built without CUDA (rebuild with nvcc on the PATH, or cmake "
                 "-DGROK_CUDA=ON); use --device cpu");
    return NULL;
}
#endif
