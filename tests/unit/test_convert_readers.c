/* test_convert_readers.c - the input readers of grok convert: the pickle
 * opcode scanner (pickle.h) and the safetensors reader (safetensors.h).
 *   - a hand-assembled protocol-4 pickle shaped like a Grok-1 checkpoint file
 *     (__main__.QuantizedWeight8bit with two numpy arrays) yields its two data
 *     payloads at the right offsets, numpy's b'b' placeholders recognised;
 *   - every truncation and every single-byte change of it either scans or
 *     fails with a message (never reads out of bounds: run it under ASan);
 *   - protocol-0 text opcodes, BINBYTES8, out-of-band buffers, data after STOP;
 *   - safetensors: a good file, then bad header sizes, offsets outside the
 *     file, a size that does not match dtype x shape, malformed JSON.
 * Temporary files go to $GROK_TMP (or /tmp). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pickle.h"
#include "safetensors.h"
#include "check.h"

typedef struct {
    uint8_t b[4096];
    size_t n;
} ByteBuf;

static void put(ByteBuf *b, const void *p, size_t n) {
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void op(ByteBuf *b, uint8_t o) { b->b[b->n++] = o; }
static void le(ByteBuf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) b->b[b->n++] = (uint8_t)(v >> (8 * i));
}
static void sbu(ByteBuf *b, const char *s) { /* SHORT_BINUNICODE + MEMOIZE */
    op(b, 0x8c);
    op(b, (uint8_t)strlen(s));
    put(b, s, strlen(s));
    op(b, 0x94);
}

/* numpy's reduce of an array: _reconstruct(ndarray, (0,), b'b') then
 * BUILD (1, shape, dtype, False, data). Returns the data offset. */
static size_t np_array(ByteBuf *b, const uint8_t *data, size_t n, uint8_t bytes_op) {
    sbu(b, "numpy.core.multiarray"), sbu(b, "_reconstruct"), op(b, 0x93), op(b, 0x94);
    sbu(b, "numpy"), sbu(b, "ndarray"), op(b, 0x93), op(b, 0x94);
    op(b, 'K'), op(b, 0), op(b, 0x85), op(b, 0x94);
    op(b, 'C'), op(b, 1), op(b, 'b'), op(b, 0x94); /* the placeholder */
    op(b, 0x87), op(b, 0x94), op(b, 'R'), op(b, 0x94);
    op(b, '('), op(b, 'K'), op(b, 1);
    op(b, 'M'), le(b, (uint64_t)n, 2), op(b, 0x85), op(b, 0x94); /* shape */
    sbu(b, "numpy"), sbu(b, "dtype"), op(b, 0x93), op(b, 0x94), sbu(b, "i1"), op(b, 0x89), op(b, 0x88), op(b, 0x87),
        op(b, 'R'), op(b, 0x94);
    op(b, 0x89); /* is_fortran False */
    op(b, bytes_op);
    if (bytes_op == 'C') op(b, (uint8_t)n);
    else if (bytes_op == 'B') le(b, n, 4);
    else le(b, n, 8);
    const size_t off = b->n;
    put(b, data, n);
    op(b, 0x94), op(b, 't'), op(b, 'b'); /* TUPLE (to MARK), BUILD */
    return off;
}

static void test_pickle(void) {
    uint8_t w[300], s[40];
    for (int i = 0; i < 300; i++) w[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 40; i++) s[i] = (uint8_t)(i + 100);
    ByteBuf b = {{0}, 0};
    op(&b, 0x80), op(&b, 4);               /* PROTO 4 */
    op(&b, 0x95), le(&b, 0, 8);            /* FRAME (length not checked by a scanner) */
    sbu(&b, "__main__"), sbu(&b, "QuantizedWeight8bit"), op(&b, 0x93), op(&b, 0x94);
    op(&b, ')'), op(&b, 0x81), op(&b, 0x94); /* EMPTY_TUPLE NEWOBJ */
    op(&b, '}'), op(&b, 0x94), op(&b, '('); /* EMPTY_DICT MARK */
    sbu(&b, "weight");
    const size_t off_w = np_array(&b, w, sizeof w, 'B');
    sbu(&b, "scales");
    const size_t off_s = np_array(&b, s, sizeof s, 0x8e);
    op(&b, 'u'), op(&b, 'b'), op(&b, '.');   /* SETITEMS BUILD STOP */

    PickleScan ps;
    Error err = {{0}};
    CHECK_EXPR(pickle_scan(b.b, b.n, &ps, &err) == 0);
    int n_data = 0;
    size_t offs[4];
    for (int i = 0; i < ps.n_blobs; i++)
        if (!pickle_blob_is_placeholder(b.b, &ps.blobs[i]) && n_data < 4) offs[n_data++] = ps.blobs[i].offset;
    CHECK_EXPR(ps.n_blobs == 4 && n_data == 2);
    CHECK_EXPR(n_data == 2 && offs[0] == off_w && offs[1] == off_s);
    CHECK_EXPR(ps.protocol == 4 && ps.end == b.n);
    pickle_scan_free(&ps);

    /* every truncation fails; every one-byte change scans or fails cleanly */
    int truncated_ok = 1, mutated = 0;
    for (size_t n = 0; n < b.n; n++) {
        if (pickle_scan(b.b, n, &ps, &err) == 0) truncated_ok = 0, pickle_scan_free(&ps);
    }
    CHECK_EXPR(truncated_ok);
    for (size_t i = 0; i < b.n; i++) {
        const uint8_t keep = b.b[i];
        for (int v = 0; v < 256; v += 17) {
            b.b[i] = (uint8_t)v;
            if (pickle_scan(b.b, b.n, &ps, &err) == 0) {
                for (int k = 0; k < ps.n_blobs; k++) CHECK_EXPR(ps.blobs[k].offset + ps.blobs[k].size <= b.n);
                pickle_scan_free(&ps);
            } else {
                CHECK_EXPR(err.msg[0] != 0);
                mutated++;
            }
        }
        b.b[i] = keep;
    }
    CHECK_EXPR(mutated > 0);

    /* unknown opcode, data after STOP, out-of-band buffer, protocol-0 text opcodes */
    const uint8_t unk[] = {0x80, 4, 0xff, '.'};
    CHECK_EXPR(pickle_scan(unk, sizeof unk, &ps, &err) != 0 && strstr(err.msg, "unknown pickle opcode 0xff at offset 2"));
    const uint8_t after[] = {'N', '.', 'N'};
    CHECK_EXPR(pickle_scan(after, sizeof after, &ps, &err) != 0 && strstr(err.msg, "after"));
    const uint8_t oob[] = {0x80, 5, 0x97, '.'};
    CHECK_EXPR(pickle_scan(oob, sizeof oob, &ps, &err) != 0 && strstr(err.msg, "out-of-band"));
    const char text[] = "cnumpy\ndtype\n(S'f4'\nI0\nI1\ntp0\nRp1\n.";
    CHECK_EXPR(pickle_scan((const uint8_t *)text, strlen(text), &ps, &err) == 0 && ps.n_blobs == 0);
    pickle_scan_free(&ps);
    const uint8_t nostop[] = {0x80, 4, 'N'};
    CHECK_EXPR(pickle_scan(nostop, sizeof nostop, &ps, &err) != 0 && strstr(err.msg, "STOP"));
}

static int write_st(const char *path, const char *header, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint64_t hl = strlen(header);
    uint8_t l8[8];
    for (int i = 0; i < 8; i++) l8[i] = (uint8_t)(hl >> (8 * i));
    int ok = fwrite(l8, 1, 8, f) == 8 && fwrite(header, 1, hl, f) == hl && fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static void test_safetensors(const char *dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/test_convert_readers.safetensors", dir);
    uint16_t data[12];
    for (int i = 0; i < 12; i++) data[i] = (uint16_t)(0x3f80 + i);
    Error err = {{0}};
    CHECK_EXPR(write_st(path,
                   "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]},\"__metadata__\":{\"format\":\"pt\"}}",
                   data, sizeof data) == 0);
    STFile *f = st_open(path, &err);
    CHECK_EXPR(f != NULL);
    if (f) {
        const STTensor *a = st_find(f, "a"), *b = st_find(f, "b");
        CHECK_EXPR(f->n_tensors == 2 && a && b && a->dtype == ST_BF16 && a->n_dims == 2 && a->shape[1] == 3);
        CHECK_EXPR(a && a->nbytes == 12 && memcmp(a->data, data, 12) == 0);
        CHECK_EXPR(b && b->dtype == ST_F32 && b->nbytes == 12 && memcmp(b->data, (const uint8_t *)data + 12, 12) == 0);
        st_close(f);
    }
    static const struct {
        const char *header, *needle;
    } bad[] = {
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,14]}}", "expected 12"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", "outside"},
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3]}}", "data_offsets"},
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[-2,3],\"data_offsets\":[0,12]}}", "shape"},
        {"[1,2,3]", "not a JSON object"},
        {"{\"a\":", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EXPR(write_st(path, bad[i].header, data, sizeof data) == 0);
        err.msg[0] = 0;
        f = st_open(path, &err);
        CHECK_EXPR(f == NULL && strstr(err.msg, bad[i].needle) != NULL);
        if (f) st_close(f), fprintf(stderr, "  accepted: %s\n", bad[i].header);
        else if (!strstr(err.msg, bad[i].needle)) fprintf(stderr, "  message: %s\n", err.msg);
    }
    /* a header length beyond the file */
    FILE *fp = fopen(path, "wb");
    const uint8_t huge[16] = {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, '{', '}'};
    CHECK_EXPR(fp && fwrite(huge, 1, sizeof huge, fp) == sizeof huge && fclose(fp) == 0);
    f = st_open(path, &err);
    CHECK_EXPR(f == NULL && strstr(err.msg, "header size"));
    remove(path);
}

int main(void) {
    const char *tmp = getenv("GROK_TMP") ? getenv("GROK_TMP") : "/tmp";
    mkdir(tmp, 0755);
    test_pickle();
    test_safetensors(tmp);
    return check_report("convert_readers");
}
