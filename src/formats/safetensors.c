/* safetensors.c - see safetensors.h. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20) /* the format's own limit is 100 MB */

static const struct {
    const char *name;
    STDtype type;
    int size;
} DTYPES[] = {
    {"F32", ST_F32, 4}, {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2}, {"F64", ST_F64, 8}, {"I8", ST_I8, 1},
    {"U8", ST_U8, 1},   {"I16", ST_I16, 2}, {"I32", ST_I32, 4},   {"I64", ST_I64, 8}, {"BOOL", ST_BOOL, 1},
};

int st_dtype_size(STDtype t) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (DTYPES[i].type == t) return DTYPES[i].size;
    return 0;
}

void st_close(STFile *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    if (f->map) munmap(f->map, (size_t)f->size);
    free(f->path);
    free(f);
}

const STTensor *st_find(const STFile *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

static int parse_header(STFile *f, const char *json, size_t len, uint64_t data_start, Error *err) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set(err, "%s: the header is not a JSON object", f->path);
    }
    int n = 0;
    for (cJSON *it = root->child; it; it = it->next) n += strcmp(it->string, "__metadata__") != 0;
    f->tensors = calloc((size_t)(n ? n : 1), sizeof *f->tensors);
    if (!f->tensors) {
        cJSON_Delete(root);
        return err_set(err, "out of memory");
    }
    const uint64_t data_size = f->size - data_start;
    int rc = -1;
    for (cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) continue;
        STTensor *t = &f->tensors[f->n_tensors];
        const char *nm = it->string;
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsObject(it) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) ||
            cJSON_GetArraySize(of) != 2) {
            err_set(err, "%s: tensor '%.80s' lacks dtype, shape or data_offsets", f->path, nm);
            goto out;
        }
        t->name = strdup(nm);
        if (!t->name) {
            err_set(err, "out of memory");
            goto out;
        }
        f->n_tensors++;
        snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->valuestring);
        t->dtype = ST_OTHER;
        int esize = 0;
        for (size_t k = 0; k < sizeof DTYPES / sizeof DTYPES[0]; k++)
            if (strcmp(DTYPES[k].name, dt->valuestring) == 0) t->dtype = DTYPES[k].type, esize = DTYPES[k].size;
        t->n_dims = cJSON_GetArraySize(sh);
        if (t->n_dims > ST_MAX_DIMS) {
            err_set(err, "%s: tensor '%.80s' has %d dimensions", f->path, nm, t->n_dims);
            goto out;
        }
        uint64_t numel = 1;
        for (int d = 0; d < t->n_dims; d++) {
            cJSON *v = cJSON_GetArrayItem(sh, d);
            if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9.0e15 ||
                v->valuedouble != (double)(int64_t)v->valuedouble) {
                err_set(err, "%s: tensor '%.80s' has a bad shape", f->path, nm);
                goto out;
            }
            t->shape[d] = (int64_t)v->valuedouble;
            if (t->shape[d] && numel > UINT64_MAX / (uint64_t)t->shape[d]) {
                err_set(err, "%s: tensor '%.80s' is too large", f->path, nm);
                goto out;
            }
            numel *= (uint64_t)t->shape[d];
        }
        cJSON *b = cJSON_GetArrayItem(of, 0), *e = cJSON_GetArrayItem(of, 1);
        if (!cJSON_IsNumber(b) || !cJSON_IsNumber(e) || b->valuedouble < 0 || e->valuedouble < b->valuedouble ||
            e->valuedouble > (double)data_size) {
            err_set(err, "%s: tensor '%.80s' has data_offsets outside the file's %llu data bytes", f->path, nm,
                    (unsigned long long)data_size);
            goto out;
        }
        uint64_t begin = (uint64_t)b->valuedouble, end = (uint64_t)e->valuedouble;
        t->nbytes = end - begin;
        if (esize && numel * (uint64_t)esize != t->nbytes) {
            err_set(err, "%s: tensor '%.80s' (%s, %llu elements) has %llu bytes, expected %llu", f->path, nm,
                    t->dtype_name, (unsigned long long)numel, (unsigned long long)t->nbytes,
                    (unsigned long long)(numel * (uint64_t)esize));
            goto out;
        }
        t->data = f->map + data_start + begin;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

STFile *st_open(const char *path, Error *err) {
    STFile *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        err_set(err, "out of memory");
        return NULL;
    }
    int fd = open_regular(path, err); /* FIFOs and devices refused */
    struct stat st;
    if (fd < 0) {
        st_close(f);
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        err_set(err, "%s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        st_close(f);
        return NULL;
    }
    f->size = (uint64_t)st.st_size;
    if (f->size < 8) {
        close(fd);
        err_set(err, "%s: too small for a safetensors file (%llu bytes)", path, (unsigned long long)f->size);
        st_close(f);
        return NULL;
    }
    void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) {
        err_set(err, "%s: cannot mmap: %s", path, strerror(e));
        st_close(f);
        return NULL;
    }
    f->map = m;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->map[i];
    if (hlen > ST_MAX_HEADER || hlen > f->size - 8) {
        err_set(err, "%s: header size %llu does not fit the file (%llu bytes): not a safetensors file?", path,
                (unsigned long long)hlen, (unsigned long long)f->size);
        st_close(f);
        return NULL;
    }
    if (parse_header(f, (const char *)f->map + 8, (size_t)hlen, 8 + hlen, err)) {
        st_close(f);
        return NULL;
    }
    return f;
}
