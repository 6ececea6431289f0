#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h" /* lukv_f16_to_f32, lukv_bf16_to_f32 */

/* Hard caps on counts, beyond the "fits in the remaining bytes" checks: a
 * real model has a few thousand tensors and a few dozen keys (the tokenizer
 * arrays are single keys). */
#define MAX_TENSORS (1u << 20)
#define MAX_KVS (1u << 20)
#define MAX_ARRAY_DEPTH 4
/* Element counts stay far from 2^64 so that byte counts can be formed safely. */
#define MAX_ELEMS ((uint64_t)1 << 62)

struct lukv_gguf_file {
  char *path;
  const uint8_t *base;       /* image (mapping or caller's buffer) */
  size_t size;
  int mapped;
  uint32_t alignment;
  uint64_t data_offset;
  int n_kv, n_tensors;
  lukv_gguf_kv *kv;          /* [n_kv] file order */
  lukv_gguf_tensor *t;       /* [n_tensors] file order */
  int *kv_by_key;            /* [n_kv] indices sorted by key */
  int *t_by_name;            /* [n_tensors] indices sorted by name */
};

/* ---- ggml types ------------------------------------------------------------ */

static const struct {
  uint32_t id;
  const char *name;
  uint32_t blck, bytes;
} ggml_types[] = {
    {0, "F32", 1, 4},          {1, "F16", 1, 2},          {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},       {7, "Q5_1", 32, 24},       {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},     {11, "Q3_K", 256, 110},    {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},    {15, "Q8_K", 256, 292},    {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98},  {19, "IQ1_S", 256, 50},    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},    {23, "IQ4_XS", 256, 136},  {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},         {27, "I64", 1, 8},         {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},        {34, "TQ1_0", 256, 54},    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

static int type_index(uint32_t type) {
  for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
    if (ggml_types[i].id == type) return (int)i;
  return -1;
}

const char *lukv_ggml_type_name(uint32_t type) {
  int i = type_index(type);
  return i < 0 ? "?" : ggml_types[i].name;
}

int lukv_ggml_type_size(uint32_t type, uint64_t *block_elems, uint64_t *block_bytes) {
  int i = type_index(type);
  if (i < 0) return 0;
  if (block_elems) *block_elems = ggml_types[i].blck;
  if (block_bytes) *block_bytes = ggml_types[i].bytes;
  return 1;
}

int lukv_ggml_type_supported(uint32_t type) {
  return type == LUKV_GGML_F32 || type == LUKV_GGML_F16 || type == LUKV_GGML_BF16 || type == LUKV_GGML_Q8_0 ||
         type == LUKV_GGML_Q4_0 || type == LUKV_GGML_Q4_1;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

int lukv_ggml_dequant(uint32_t type, const void *src, uint64_t n, float *dst) {
  const uint8_t *p = src;
  switch (type) {
  case LUKV_GGML_F32:
    for (uint64_t i = 0; i < n; i++) {
      uint32_t u = le32(p + 4 * i);
      memcpy(&dst[i], &u, 4);
    }
    return LUKV_OK;
  case LUKV_GGML_F16:
    for (uint64_t i = 0; i < n; i++) dst[i] = lukv_f16_to_f32(le16(p + 2 * i));
    return LUKV_OK;
  case LUKV_GGML_BF16:
    for (uint64_t i = 0; i < n; i++) dst[i] = lukv_bf16_to_f32(le16(p + 2 * i));
    return LUKV_OK;
  case LUKV_GGML_Q8_0:
    if (n % 32) return LUKV_ERR_INVALID;
    for (uint64_t b = 0; b < n / 32; b++, p += 34) {
      float d = lukv_f16_to_f32(le16(p));
      for (int j = 0; j < 32; j++) dst[32 * b + j] = (float)(int8_t)p[2 + j] * d;
    }
    return LUKV_OK;
  case LUKV_GGML_Q4_0:
    if (n % 32) return LUKV_ERR_INVALID;
    for (uint64_t b = 0; b < n / 32; b++, p += 18) {
      float d = lukv_f16_to_f32(le16(p));
      for (int j = 0; j < 16; j++) {
        dst[32 * b + j] = (float)((int)(p[2 + j] & 0x0F) - 8) * d;
        dst[32 * b + 16 + j] = (float)((int)(p[2 + j] >> 4) - 8) * d;
      }
    }
    return LUKV_OK;
  case LUKV_GGML_Q4_1:
    if (n % 32) return LUKV_ERR_INVALID;
    for (uint64_t b = 0; b < n / 32; b++, p += 20) {
      float d = lukv_f16_to_f32(le16(p)), m = lukv_f16_to_f32(le16(p + 2));
      for (int j = 0; j < 16; j++) {
        /* two roundings as ggml and gguf-py do: the product is a separate
         * f32 value (this file is built with -std=c11: no fp contraction) */
        float lo = (float)(p[4 + j] & 0x0F) * d, hi = (float)(p[4 + j] >> 4) * d;
        dst[32 * b + j] = lo + m;
        dst[32 * b + 16 + j] = hi + m;
      }
    }
    return LUKV_OK;
  default:
    return LUKV_ERR_UNSUPPORTED;
  }
}

/* ---- parsing ------------------------------------------------------------------- */

typedef struct cursor {
  const uint8_t *b;
  uint64_t size, pos;
  const char *path;
  lukv_error *err;
} cursor;

static uint64_t left(const cursor *c) { return c->size - c->pos; }

/* Needs n more bytes for WHAT (a printf'd object name). */
static int need(cursor *c, uint64_t n, const char *what) {
  if (n > left(c))
    return lukv_error_set(c->err, LUKV_ERR_FORMAT,
                          "%s: %s: needs %llu bytes at offset %llu but the file has %llu (truncated?)", c->path, what,
                          (unsigned long long)n, (unsigned long long)c->pos, (unsigned long long)c->size);
  return LUKV_OK;
}

static int rd_u32(cursor *c, const char *what, uint32_t *v) {
  int rc = need(c, 4, what);
  if (rc == LUKV_OK) *v = le32(c->b + c->pos), c->pos += 4;
  return rc;
}

static int rd_u64(cursor *c, const char *what, uint64_t *v) {
  int rc = need(c, 8, what);
  if (rc == LUKV_OK) *v = le64(c->b + c->pos), c->pos += 8;
  return rc;
}

/* A string: u64 length, then that many bytes, all inside the file. */
static int rd_str(cursor *c, const char *what, const char **s, uint64_t *len) {
  int rc = rd_u64(c, what, len);
  if (rc != LUKV_OK) return rc;
  if (*len > left(c))
    return lukv_error_set(c->err, LUKV_ERR_FORMAT,
                          "%s: %s: string length %llu at offset %llu runs beyond the end of the file (%llu bytes)",
                          c->path, what, (unsigned long long)*len, (unsigned long long)(c->pos - 8),
                          (unsigned long long)c->size);
  *s = (const char *)c->b + c->pos;
  c->pos += *len;
  return LUKV_OK;
}

/* Keys and tensor names: 1..LUKV_GGUF_MAX_NAME printable ASCII bytes, so that
 * they can go into one-line messages as they are. */
static int rd_name(cursor *c, const char *what, char **out) {
  const char *s = NULL; /* set by rd_str on success; -O3 cannot see that */
  uint64_t len = 0;
  int rc = rd_str(c, what, &s, &len);
  if (rc != LUKV_OK) return rc;
  if (len == 0 || len > LUKV_GGUF_MAX_NAME)
    return lukv_error_set(c->err, LUKV_ERR_FORMAT, "%s: %s: length %llu outside [1, %d]", c->path, what,
                          (unsigned long long)len, LUKV_GGUF_MAX_NAME);
  for (uint64_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
      return lukv_error_set(c->err, LUKV_ERR_FORMAT, "%s: %s: byte %llu (0x%02x) is not printable ASCII", c->path,
                            what, (unsigned long long)i, (unsigned char)s[i]);
  *out = malloc(len + 1);
  if (!*out) return lukv_error_set(c->err, LUKV_ERR_NOMEM, "%s: %s: out of memory", c->path, what);
  memcpy(*out, s, len);
  (*out)[len] = '\0';
  return LUKV_OK;
}

static const char *vtype_name(uint32_t t) {
  static const char *n[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64",
                            "f64"};
  return t < sizeof n / sizeof n[0] ? n[t] : "?";
}

/* Bytes of a fixed-size value type, 0 for string / array / unknown. */
static uint64_t vtype_size(uint32_t t) {
  switch (t) {
  case LUKV_GGUF_U8: case LUKV_GGUF_I8: case LUKV_GGUF_BOOL: return 1;
  case LUKV_GGUF_U16: case LUKV_GGUF_I16: return 2;
  case LUKV_GGUF_U32: case LUKV_GGUF_I32: case LUKV_GGUF_F32: return 4;
  case LUKV_GGUF_U64: case LUKV_GGUF_I64: case LUKV_GGUF_F64: return 8;
  default: return 0;
  }
}

static int known_vtype(uint32_t t) { return t <= LUKV_GGUF_F64; }

/* Parses one value of type t at the cursor; kv (may be NULL, for array
 * elements) receives scalars, strings and array descriptors. */
static int rd_value(cursor *c, const char *key, uint32_t t, int depth, lukv_gguf_kv *kv) {
  char what[LUKV_GGUF_MAX_NAME + 64];
  snprintf(what, sizeof what, "key \"%s\"", key);
  if (!known_vtype(t))
    return lukv_error_set(c->err, LUKV_ERR_FORMAT, "%s: %s: unknown value type %lu", c->path, what, (unsigned long)t);
  uint64_t sz = vtype_size(t);
  if (sz) {
    int rc = need(c, sz, what);
    if (rc != LUKV_OK) return rc;
    const uint8_t *p = c->b + c->pos;
    c->pos += sz;
    if (t == LUKV_GGUF_BOOL && p[0] > 1)
      return lukv_error_set(c->err, LUKV_ERR_FORMAT, "%s: %s: bool value %u is neither 0 nor 1", c->path, what, p[0]);
    if (!kv) return LUKV_OK;
    switch (t) {
    case LUKV_GGUF_U8: case LUKV_GGUF_BOOL: kv->u = p[0]; break;
    case LUKV_GGUF_I8: kv->i = (int8_t)p[0]; break;
    case LUKV_GGUF_U16: kv->u = le16(p); break;
    case LUKV_GGUF_I16: kv->i = (int16_t)le16(p); break;
    case LUKV_GGUF_U32: kv->u = le32(p); break;
    case LUKV_GGUF_I32: kv->i = (int32_t)le32(p); break;
    case LUKV_GGUF_U64: kv->u = le64(p); break;
    case LUKV_GGUF_I64: kv->i = (int64_t)le64(p); break;
    case LUKV_GGUF_F32: {
      uint32_t u = le32(p);
      float f;
      memcpy(&f, &u, 4);
      kv->f = f;
      break;
    }
    case LUKV_GGUF_F64: {
      uint64_t u = le64(p);
      memcpy(&kv->f, &u, 8);
      break;
    }
    }
    return LUKV_OK;
  }
  if (t == LUKV_GGUF_STRING) {
    const char *s;
    uint64_t len;
    int rc = rd_str(c, what, &s, &len);
    if (rc == LUKV_OK && kv) kv->str = s, kv->str_len = len;
    return rc;
  }
  /* array */
  if (depth >= MAX_ARRAY_DEPTH)
    return lukv_error_set(c->err, LUKV_ERR_FORMAT, "%s: %s: arrays nested deeper than %d", c->path, what,
                          MAX_ARRAY_DEPTH);
  uint32_t et;
  uint64_t n;
  int rc = rd_u32(c, what, &et);
  if (rc == LUKV_OK) rc = rd_u64(c, what, &n);
  if (rc != LUKV_OK) return rc;
  if (!known_vtype(et))
    return lukv_error_set(c->err, LUKV_ERR_FORMAT, "%s: %s: unknown array element type %lu", c->path, what,
                          (unsigned long)et);
  /* the smallest encoding of one element bounds the count before any loop */
  uint64_t min_el = vtype_size(et) ? vtype_size(et) : et == LUKV_GGUF_STRING ? 8 : 12;
  if (n > left(c) / min_el)
    return lukv_error_set(c->err, LUKV_ERR_FORMAT,
                          "%s: %s: array of %llu %s elements cannot fit in the %llu bytes left in the file", c->path,
                          what, (unsigned long long)n, vtype_name(et), (unsigned long long)left(c));
  if (kv) kv->arr_type = (lukv_gguf_vtype)et, kv->arr_n = n, kv->arr_data = c->b + c->pos;
  if (vtype_size(et) && et != LUKV_GGUF_BOOL) {
    c->pos += n * vtype_size(et);
    return LUKV_OK;
  }
  for (uint64_t i = 0; i < n; i++) {
    if (et == LUKV_GGUF_STRING) {
      const char *s;
      uint64_t len;
      char ew[LUKV_GGUF_MAX_NAME + 64];
      snprintf(ew, sizeof ew, "key \"%s\" element %llu", key, (unsigned long long)i);
      rc = rd_str(c, ew, &s, &len);
    } else {
      rc = rd_value(c, key, et, depth + 1, NULL);
    }
    if (rc != LUKV_OK) return rc;
  }
  return LUKV_OK;
}

/* Index sorts: qsort over pointers into the arrays, then back to indices. */
static int cmp_kv(const void *a, const void *b) {
  return strcmp((*(const lukv_gguf_kv *const *)a)->key, (*(const lukv_gguf_kv *const *)b)->key);
}
static int cmp_tname(const void *a, const void *b) {
  return strcmp((*(const lukv_gguf_tensor *const *)a)->name, (*(const lukv_gguf_tensor *const *)b)->name);
}
static int cmp_toff(const void *a, const void *b) {
  uint64_t x = (*(const lukv_gguf_tensor *const *)a)->offset, y = (*(const lukv_gguf_tensor *const *)b)->offset;
  return x < y ? -1 : x > y;
}

/* idx [n] = indices of base[0..n) (elements of size sz) in cmp's order. */
static int sort_idx(const void *base, size_t sz, int n, int (*cmp)(const void *, const void *), int *idx) {
  const void **p = malloc((n ? (size_t)n : 1) * sizeof *p);
  if (!p) return LUKV_ERR_NOMEM;
  for (int i = 0; i < n; i++) p[i] = (const char *)base + (size_t)i * sz;
  qsort(p, (size_t)n, sizeof *p, cmp);
  for (int i = 0; i < n; i++) idx[i] = (int)(((const char *)p[i] - (const char *)base) / (ptrdiff_t)sz);
  free(p);
  return LUKV_OK;
}

static int parse(lukv_gguf_file *f, lukv_error *err) {
  cursor c = {.b = f->base, .size = f->size, .pos = 0, .path = f->path, .err = err};
  if (f->size < 4 || memcmp(f->base, "GGUF", 4) != 0)
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: header: not a GGUF file (magic is not \"GGUF\")", f->path);
  c.pos = 4;
  uint32_t version;
  uint64_t n_t, n_kv;
  int rc = rd_u32(&c, "header", &version);
  if (rc != LUKV_OK) return rc;
  if (version != LUKV_GGUF_VERSION) {
    if (version == 0x03000000u)
      return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: header: big-endian GGUF is not supported", f->path);
    return lukv_error_set(err, LUKV_ERR_VERSION, "%s: header: GGUF version %lu, this build reads version %d",
                          f->path, (unsigned long)version, LUKV_GGUF_VERSION);
  }
  rc = rd_u64(&c, "header", &n_t);
  if (rc == LUKV_OK) rc = rd_u64(&c, "header", &n_kv);
  if (rc != LUKV_OK) return rc;
  /* a key-value needs >= 13 bytes (8 length + 1 key byte + 4 type), a tensor
   * info >= 29 (8 + 1 + 4 n_dims + 8 ne + 4 type + 8 offset) */
  if (n_kv > MAX_KVS || n_kv > left(&c) / 13)
    return lukv_error_set(err, n_kv > MAX_KVS ? LUKV_ERR_RANGE : LUKV_ERR_FORMAT,
                          "%s: header: kv_count %llu is absurd (at most %u, and the %llu bytes left hold fewer)",
                          f->path, (unsigned long long)n_kv, MAX_KVS, (unsigned long long)left(&c));
  if (n_t > MAX_TENSORS || n_t > (left(&c) - 13 * n_kv) / 29)
    return lukv_error_set(err, n_t > MAX_TENSORS ? LUKV_ERR_RANGE : LUKV_ERR_FORMAT,
                          "%s: header: tensor_count %llu is absurd (at most %u, and the %llu bytes left hold fewer)",
                          f->path, (unsigned long long)n_t, MAX_TENSORS, (unsigned long long)left(&c));
  f->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *f->kv);
  f->t = calloc(n_t ? (size_t)n_t : 1, sizeof *f->t);
  f->kv_by_key = malloc((n_kv ? (size_t)n_kv : 1) * sizeof(int));
  f->t_by_name = malloc((n_t ? (size_t)n_t : 1) * sizeof(int));
  if (!f->kv || !f->t || !f->kv_by_key || !f->t_by_name)
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: header: out of memory", f->path);

  /* ---- key-values */
  f->alignment = LUKV_GGUF_DEFAULT_ALIGNMENT;
  for (uint64_t i = 0; i < n_kv; i++) {
    char what[64];
    snprintf(what, sizeof what, "kv %llu key", (unsigned long long)i);
    lukv_gguf_kv *kv = &f->kv[i];
    rc = rd_name(&c, what, &kv->key);
    if (rc != LUKV_OK) return rc;
    f->n_kv = (int)i + 1; /* owns the key from here on */
    uint32_t type;
    char kw[LUKV_GGUF_MAX_NAME + 16];
    snprintf(kw, sizeof kw, "key \"%s\"", kv->key);
    rc = rd_u32(&c, kw, &type);
    if (rc == LUKV_OK) rc = rd_value(&c, kv->key, type, 0, kv);
    if (rc != LUKV_OK) return rc;
    kv->type = (lukv_gguf_vtype)type;
    if (strcmp(kv->key, "general.alignment") == 0) {
      if (type != LUKV_GGUF_U32)
        return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: general.alignment: type %s, expected u32", f->path,
                              vtype_name(type));
      if (kv->u == 0 || (kv->u & (kv->u - 1)) != 0)
        return lukv_error_set(err, LUKV_ERR_RANGE, "%s: general.alignment: %llu is not a power of two", f->path,
                              (unsigned long long)kv->u);
      f->alignment = (uint32_t)kv->u;
    }
  }
  if (sort_idx(f->kv, sizeof *f->kv, f->n_kv, cmp_kv, f->kv_by_key) != LUKV_OK)
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", f->path);
  for (int i = 1; i < f->n_kv; i++)
    if (strcmp(f->kv[f->kv_by_key[i - 1]].key, f->kv[f->kv_by_key[i]].key) == 0)
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: key appears twice", f->path, f->kv[f->kv_by_key[i]].key);

  /* ---- tensor infos */
  for (uint64_t i = 0; i < n_t; i++) {
    lukv_gguf_tensor *t = &f->t[i];
    char what[64];
    snprintf(what, sizeof what, "tensor %llu name", (unsigned long long)i);
    rc = rd_name(&c, what, &t->name);
    if (rc != LUKV_OK) return rc;
    f->n_tensors = (int)i + 1;
    uint32_t nd, type;
    rc = rd_u32(&c, t->name, &nd);
    if (rc != LUKV_OK) return rc;
    if (nd < 1 || nd > LUKV_GGUF_MAX_DIMS)
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: n_dims %lu outside [1, %d]", f->path, t->name,
                            (unsigned long)nd, LUKV_GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    t->n_elem = 1;
    for (int d = 0; d < LUKV_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
      uint64_t ne;
      rc = rd_u64(&c, t->name, &ne);
      if (rc != LUKV_OK) return rc;
      if (ne == 0 || ne > MAX_ELEMS || ne > MAX_ELEMS / t->n_elem)
        return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: dimension %lu is %llu (zero, or the element count "
                              "passes 2^62)", f->path, t->name, (unsigned long)d, (unsigned long long)ne);
      t->ne[d] = (int64_t)ne;
      t->n_elem *= ne;
    }
    rc = rd_u32(&c, t->name, &type);
    if (rc == LUKV_OK) rc = rd_u64(&c, t->name, &t->offset);
    if (rc != LUKV_OK) return rc;
    t->type = type;
    uint64_t blck, bbytes;
    if (!lukv_ggml_type_size(type, &blck, &bbytes))
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: unknown ggml type %lu", f->path, t->name,
                            (unsigned long)type);
    if ((uint64_t)t->ne[0] % blck != 0)
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: row length %lld is not a multiple of the %s block (%llu)",
                            f->path, t->name, (long long)t->ne[0], lukv_ggml_type_name(type),
                            (unsigned long long)blck);
    uint64_t blocks = t->n_elem / blck;
    if (blocks > UINT64_MAX / bbytes)
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: byte size overflows", f->path, t->name);
    t->nbytes = blocks * bbytes;
  }
  if (sort_idx(f->t, sizeof *f->t, f->n_tensors, cmp_tname, f->t_by_name) != LUKV_OK)
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", f->path);
  for (int i = 1; i < f->n_tensors; i++)
    if (strcmp(f->t[f->t_by_name[i - 1]].name, f->t[f->t_by_name[i]].name) == 0)
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: tensor name appears twice", f->path,
                            f->t[f->t_by_name[i]].name);

  /* ---- data section */
  uint64_t a = f->alignment, end_info = c.pos;
  uint64_t data_off = end_info % a ? end_info + (a - end_info % a) : end_info; /* end_info < 2^63: no overflow */
  if (f->n_tensors > 0 && data_off > f->size)
    return lukv_error_set(err, LUKV_ERR_FORMAT,
                          "%s: data: section would start at offset %llu, beyond the end of the file (%llu bytes)",
                          f->path, (unsigned long long)data_off, (unsigned long long)f->size);
  f->data_offset = data_off > f->size ? f->size : data_off;
  uint64_t data_size = f->size - f->data_offset;
  for (int i = 0; i < f->n_tensors; i++) {
    lukv_gguf_tensor *t = &f->t[i];
    if (t->offset % a != 0)
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: offset %llu is not a multiple of the alignment %llu",
                            f->path, t->name, (unsigned long long)t->offset, (unsigned long long)a);
    if (t->offset > data_size || t->nbytes > data_size - t->offset)
      return lukv_error_set(err, LUKV_ERR_FORMAT,
                            "%s: %s: data [%llu, +%llu) lies outside the data section (%llu bytes; file truncated?)",
                            f->path, t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                            (unsigned long long)data_size);
    t->data = f->base + f->data_offset + t->offset;
  }
  int *by_off = malloc((f->n_tensors ? (size_t)f->n_tensors : 1) * sizeof(int));
  if (!by_off || sort_idx(f->t, sizeof *f->t, f->n_tensors, cmp_toff, by_off) != LUKV_OK) {
    free(by_off);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", f->path);
  }
  rc = LUKV_OK;
  for (int i = 1; i < f->n_tensors && rc == LUKV_OK; i++) {
    const lukv_gguf_tensor *p = &f->t[by_off[i - 1]], *q = &f->t[by_off[i]];
    if (p->offset + p->nbytes > q->offset)
      rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: data overlaps tensor %s", f->path, q->name, p->name);
  }
  free(by_off);
  return rc;
}

int lukv_gguf_parse(const char *path, const uint8_t *buf, size_t size, lukv_gguf_file **out, lukv_error *err) {
  if (!out) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_gguf_parse: out is NULL");
  *out = NULL;
  if (!path) path = "(buffer)";
  if (!buf && size) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: buffer is NULL", path);
  lukv_gguf_file *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    free(f);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", path);
  }
  f->base = buf;
  f->size = size;
  int rc = parse(f, err);
  if (rc != LUKV_OK) {
    lukv_gguf_close(f);
    return rc;
  }
  *out = f;
  return LUKV_OK;
}

int lukv_gguf_open(const char *path, lukv_gguf_file **out, lukv_error *err) {
  if (!out) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_gguf_open: out is NULL");
  *out = NULL;
  if (!path) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_gguf_open: path is NULL");
  int fd = open(path, O_RDONLY);
  if (fd < 0) return lukv_error_set(err, LUKV_ERR_IO, "%s: file: cannot open (%s)", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return lukv_error_set(err, LUKV_ERR_IO, "%s: file: not a regular file", path);
  }
  if (st.st_size == 0) {
    close(fd);
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: header: empty file, not GGUF", path);
  }
  if ((uint64_t)st.st_size > SIZE_MAX) {
    close(fd);
    return lukv_error_set(err, LUKV_ERR_TOO_LARGE, "%s: file: too large to map", path);
  }
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) return lukv_error_set(err, LUKV_ERR_IO, "%s: file: cannot map (%s)", path, strerror(e));
  int rc = lukv_gguf_parse(path, p, (size_t)st.st_size, out, err);
  if (rc != LUKV_OK) {
    munmap(p, (size_t)st.st_size);
    return rc;
  }
  (*out)->mapped = 1;
  return LUKV_OK;
}

void lukv_gguf_close(lukv_gguf_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n_kv; i++) free(f->kv[i].key);
  for (int i = 0; i < f->n_tensors; i++) free(f->t[i].name);
  free(f->kv);
  free(f->t);
  free(f->kv_by_key);
  free(f->t_by_name);
  if (f->mapped) munmap((void *)f->base, f->size);
  free(f->path);
  free(f);
}

const char *lukv_gguf_path(const lukv_gguf_file *f) { return f->path; }
uint32_t lukv_gguf_alignment(const lukv_gguf_file *f) { return f->alignment; }
uint64_t lukv_gguf_data_offset(const lukv_gguf_file *f) { return f->data_offset; }
int lukv_gguf_kv_count(const lukv_gguf_file *f) { return f->n_kv; }
int lukv_gguf_tensor_count(const lukv_gguf_file *f) { return f->n_tensors; }
const lukv_gguf_kv *lukv_gguf_kv_at(const lukv_gguf_file *f, int i) {
  return i >= 0 && i < f->n_kv ? &f->kv[i] : NULL;
}
const lukv_gguf_tensor *lukv_gguf_tensor_at(const lukv_gguf_file *f, int i) {
  return i >= 0 && i < f->n_tensors ? &f->t[i] : NULL;
}

const lukv_gguf_kv *lukv_gguf_find_kv(const lukv_gguf_file *f, const char *key) {
  int lo = 0, hi = f->n_kv - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2, c = strcmp(f->kv[f->kv_by_key[mid]].key, key);
    if (c == 0) return &f->kv[f->kv_by_key[mid]];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

const lukv_gguf_tensor *lukv_gguf_find_tensor(const lukv_gguf_file *f, const char *name) {
  int lo = 0, hi = f->n_tensors - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2, c = strcmp(f->t[f->t_by_name[mid]].name, name);
    if (c == 0) return &f->t[f->t_by_name[mid]];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

/* ---- typed getters ------------------------------------------------------------- */

static int is_signed_int(uint32_t t) {
  return t == LUKV_GGUF_I8 || t == LUKV_GGUF_I16 || t == LUKV_GGUF_I32 || t == LUKV_GGUF_I64;
}
static int is_unsigned_int(uint32_t t) {
  return t == LUKV_GGUF_U8 || t == LUKV_GGUF_U16 || t == LUKV_GGUF_U32 || t == LUKV_GGUF_U64;
}

int lukv_gguf_get_int(const lukv_gguf_file *f, const char *key, int required, int64_t def, int64_t lo, int64_t hi,
                      int64_t *out, lukv_error *err) {
  const lukv_gguf_kv *kv = lukv_gguf_find_kv(f, key);
  if (!kv) {
    if (required) return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: missing", f->path, key);
    *out = def;
    return LUKV_OK;
  }
  int64_t v;
  if (is_unsigned_int(kv->type)) {
    if (kv->u > (uint64_t)INT64_MAX)
      return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: %llu outside [%lld, %lld]", f->path, key,
                            (unsigned long long)kv->u, (long long)lo, (long long)hi);
    v = (int64_t)kv->u;
  } else if (is_signed_int(kv->type)) {
    v = kv->i;
  } else {
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: type %s, expected an integer", f->path, key,
                          vtype_name(kv->type));
  }
  if (v < lo || v > hi)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: %lld outside [%lld, %lld]", f->path, key, (long long)v,
                          (long long)lo, (long long)hi);
  *out = v;
  return LUKV_OK;
}

int lukv_gguf_get_float(const lukv_gguf_file *f, const char *key, int required, double def, double *out,
                        lukv_error *err) {
  const lukv_gguf_kv *kv = lukv_gguf_find_kv(f, key);
  if (!kv) {
    if (required) return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: missing", f->path, key);
    *out = def;
    return LUKV_OK;
  }
  double v;
  if (kv->type == LUKV_GGUF_F32 || kv->type == LUKV_GGUF_F64) v = kv->f;
  else if (is_unsigned_int(kv->type)) v = (double)kv->u;
  else if (is_signed_int(kv->type)) v = (double)kv->i;
  else
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: type %s, expected a number", f->path, key,
                          vtype_name(kv->type));
  if (!isfinite(v)) return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: not a finite number", f->path, key);
  *out = v;
  return LUKV_OK;
}

int lukv_gguf_get_string(const lukv_gguf_file *f, const char *key, int required, const char *def, char *buf,
                         size_t cap, lukv_error *err) {
  const lukv_gguf_kv *kv = lukv_gguf_find_kv(f, key);
  if (!kv) {
    if (required || !def) return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: missing", f->path, key);
    snprintf(buf, cap, "%s", def);
    return LUKV_OK;
  }
  if (kv->type != LUKV_GGUF_STRING)
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: type %s, expected string", f->path, key,
                          vtype_name(kv->type));
  if (kv->str_len >= cap || memchr(kv->str, 0, (size_t)kv->str_len))
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: string of %llu bytes is longer than %zu or holds a NUL",
                          f->path, key, (unsigned long long)kv->str_len, cap ? cap - 1 : 0);
  memcpy(buf, kv->str, (size_t)kv->str_len);
  buf[kv->str_len] = '\0';
  return LUKV_OK;
}

/* ---- Llama GGUF -> engine config ------------------------------------------------ */

/* A value from the file for a message: printable bytes kept, others as '?',
 * at most 64 of them. */
static void printable(const char *s, size_t n, char out[72]) {
  size_t k = 0;
  for (size_t i = 0; i < n && k < 64; i++) out[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
  if (n > 64) out[k++] = '.', out[k++] = '.', out[k++] = '.';
  out[k] = '\0';
}

static int get_i(const lukv_gguf_file *f, const char *key, int required, int64_t def, int64_t lo, int64_t hi,
                 int *out, lukv_error *err) {
  int64_t v;
  int rc = lukv_gguf_get_int(f, key, required, def, lo, hi, &v, err);
  if (rc == LUKV_OK) *out = (int)v;
  return rc;
}

static int get_pos(const lukv_gguf_file *f, const char *key, int required, double def, double *out,
                   lukv_error *err) {
  int rc = lukv_gguf_get_float(f, key, required, def, out, err);
  if (rc == LUKV_OK && !(*out > 0))
    rc = lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: %g is not positive", f->path, key, *out);
  return rc;
}

int lukv_gguf_config(const lukv_gguf_file *f, lukv_model_config *c, lukv_error *err) {
  memset(c, 0, sizeof *c);
  const char *P = f->path;
  const lukv_gguf_kv *ka = lukv_gguf_find_kv(f, "general.architecture");
  if (!ka) return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: general.architecture: missing", P);
  if (ka->type != LUKV_GGUF_STRING)
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: general.architecture: type %s, expected string", P,
                          vtype_name(ka->type));
  if (!(ka->str_len == 5 && memcmp(ka->str, "llama", 5) == 0)) {
    char a[72];
    printable(ka->str, (size_t)ka->str_len, a);
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                          "%s: general.architecture: \"%s\" is not supported (supported: llama)", P, a);
  }
  c->arch = LUKV_ARCH_LLAMA;
  snprintf(c->arch_name, sizeof c->arch_name, "llama");
  int rc = get_i(f, "llama.block_count", 1, 0, 1, LUKV_MAX_LAYERS, &c->n_layers, err);
  if (rc == LUKV_OK) rc = get_i(f, "llama.embedding_length", 1, 0, 1, 1 << 16, &c->hidden_size, err);
  if (rc == LUKV_OK) rc = get_i(f, "llama.feed_forward_length", 1, 0, 1, 1 << 20, &c->intermediate_size, err);
  if (rc == LUKV_OK) rc = get_i(f, "llama.attention.head_count", 1, 0, 1, 1024, &c->n_heads, err);
  if (rc == LUKV_OK) rc = get_i(f, "llama.attention.head_count_kv", 0, c->n_heads, 1, 1024, &c->n_kv_heads, err);
  if (rc != LUKV_OK) return rc;
  if (c->n_heads % c->n_kv_heads != 0)
    return lukv_error_set(err, LUKV_ERR_SHAPE,
                          "%s: llama.attention.head_count_kv: %d does not divide llama.attention.head_count %d", P,
                          c->n_kv_heads, c->n_heads);
  rc = get_i(f, "llama.attention.key_length", 0, c->hidden_size / c->n_heads, 1, 1024, &c->head_dim, err);
  int vdim = 0, rdim = 0;
  if (rc == LUKV_OK) rc = get_i(f, "llama.attention.value_length", 0, c->head_dim, 1, 1024, &vdim, err);
  if (rc == LUKV_OK) rc = get_i(f, "llama.rope.dimension_count", 0, c->head_dim, 1, 1024, &rdim, err);
  if (rc != LUKV_OK) return rc;
  if (c->head_dim < 2 || c->head_dim % 2)
    return lukv_error_set(err, LUKV_ERR_SHAPE, "%s: llama.attention.key_length: head_dim %d is not even and >= 2",
                          P, c->head_dim);
  if (vdim != c->head_dim)
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                          "%s: llama.attention.value_length: %d differs from key_length %d", P, vdim, c->head_dim);
  if (rdim != c->head_dim)
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                          "%s: llama.rope.dimension_count: %d rotary dims of head_dim %d (partial rotary is not "
                          "supported)", P, rdim, c->head_dim);
  rc = get_i(f, "llama.context_length", 1, 0, 1, 1L << 30, &c->max_position_embeddings, err);
  if (rc == LUKV_OK) rc = get_pos(f, "llama.attention.layer_norm_rms_epsilon", 1, 0, &c->rms_norm_eps, err);
  if (rc == LUKV_OK) rc = get_pos(f, "llama.rope.freq_base", 0, 10000.0, &c->rope_theta, err);
  if (rc != LUKV_OK) return rc;

  /* vocabulary: the tokenizer's token list is what transformers uses too */
  const lukv_gguf_kv *kt = lukv_gguf_find_kv(f, "tokenizer.ggml.tokens");
  const lukv_gguf_tensor *te = lukv_gguf_find_tensor(f, "token_embd.weight");
  if (kt) {
    if (kt->type != LUKV_GGUF_ARRAY || kt->arr_type != LUKV_GGUF_STRING)
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: tokenizer.ggml.tokens: not an array of strings", P);
    if (kt->arr_n < 1 || kt->arr_n > (1u << 24))
      return lukv_error_set(err, LUKV_ERR_RANGE, "%s: tokenizer.ggml.tokens: %llu tokens outside [1, 2^24]", P,
                            (unsigned long long)kt->arr_n);
    c->vocab_size = (int)kt->arr_n;
  } else if (lukv_gguf_find_kv(f, "llama.vocab_size")) {
    rc = get_i(f, "llama.vocab_size", 1, 0, 1, 1 << 24, &c->vocab_size, err);
  } else if (te && te->ndim == 2 && te->ne[1] <= (1 << 24)) {
    c->vocab_size = (int)te->ne[1];
  } else {
    return lukv_error_set(err, LUKV_ERR_FORMAT,
                          "%s: tokenizer.ggml.tokens: missing (and no llama.vocab_size or token_embd.weight)", P);
  }
  if (rc != LUKV_OK) return rc;

  /* RoPE scaling */
  c->rope_type = LUKV_ROPE_DEFAULT;
  c->rope_factor = 1.0;
  char st[64];
  rc = lukv_gguf_get_string(f, "llama.rope.scaling.type", 0, "none", st, sizeof st, err);
  if (rc != LUKV_OK) return rc;
  if (strcmp(st, "linear") == 0) {
    c->rope_type = LUKV_ROPE_LINEAR;
    rc = get_pos(f, "llama.rope.scaling.factor", 1, 0, &c->rope_factor, err);
  } else if (strcmp(st, "none") != 0) {
    char a[72];
    printable(st, strlen(st), a);
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                          "%s: llama.rope.scaling.type: \"%s\" is not supported (none, linear)", P, a);
  } else if (lukv_gguf_find_kv(f, "llama.rope.scale_linear")) { /* older spelling */
    rc = get_pos(f, "llama.rope.scale_linear", 1, 0, &c->rope_factor, err);
    if (rc == LUKV_OK && c->rope_factor != 1.0) c->rope_type = LUKV_ROPE_LINEAR;
  }
  if (rc != LUKV_OK) return rc;
  if (lukv_gguf_find_tensor(f, "rope_freqs.weight"))
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                          "%s: rope_freqs.weight: per-frequency RoPE factors (Llama 3.1 scaling) are not supported", P);

  c->tie_word_embeddings = lukv_gguf_find_tensor(f, "output.weight") == NULL;
  c->qkv_bias = lukv_gguf_find_tensor(f, "blk.0.attn_q.bias") != NULL;
  c->o_bias = lukv_gguf_find_tensor(f, "blk.0.attn_output.bias") != NULL;
  c->mlp_bias = lukv_gguf_find_tensor(f, "blk.0.ffn_gate.bias") != NULL;
  c->sliding_window = 0;
  c->initializer_range = 0.02;
  return LUKV_OK;
}

/* ---- names ------------------------------------------------------------------------ */

int lukv_gguf_tensor_name(const char *hf, char *buf, size_t cap) {
  static const struct {
    const char *hf, *gg;
  } top[] = {{"model.embed_tokens.weight", "token_embd.weight"},
             {"model.norm.weight", "output_norm.weight"},
             {"lm_head.weight", "output.weight"}},
    layer[] = {{"input_layernorm.weight", "attn_norm.weight"},
               {"self_attn.q_proj.", "attn_q."},
               {"self_attn.k_proj.", "attn_k."},
               {"self_attn.v_proj.", "attn_v."},
               {"self_attn.o_proj.", "attn_output."},
               {"post_attention_layernorm.weight", "ffn_norm.weight"},
               {"mlp.gate_proj.", "ffn_gate."},
               {"mlp.up_proj.", "ffn_up."},
               {"mlp.down_proj.", "ffn_down."}};
  if (cap) buf[0] = '\0';
  for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
    if (strcmp(hf, top[i].hf) == 0) return snprintf(buf, cap, "%s", top[i].gg) < (int)cap;
  int l, n = 0;
  if (sscanf(hf, "model.layers.%d.%n", &l, &n) != 1 || n == 0 || l < 0) return 0;
  const char *rest = hf + n;
  for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
    size_t k = strlen(layer[i].hf);
    if (strncmp(rest, layer[i].hf, k) == 0) {
      const char *tail = rest + k;
      /* prefixes ending in '.' take "weight" / "bias"; full names nothing */
      if (layer[i].hf[k - 1] == '.' && strcmp(tail, "weight") && strcmp(tail, "bias")) return 0;
      if (layer[i].hf[k - 1] != '.' && *tail) return 0;
      return snprintf(buf, cap, "blk.%d.%s%s", l, layer[i].gg, tail) < (int)cap;
    }
  }
  if (cap) buf[0] = '\0';
  return 0;
}

int lukv_is_gguf_path(const char *path) {
  size_t n = path ? strlen(path) : 0;
  return n >= 5 && strcasecmp(path + n - 5, ".gguf") == 0;
}

/* ---- weights --------------------------------------------------------------------- */

typedef struct gg_ctx {
  const lukv_gguf_file *f;
  const lukv_model_config *cfg;
  int fill;        /* 0: check and count, 1: dequantise */
  uint64_t total;  /* pass 0: f32 elements needed */
  float *next;     /* pass 1: next free element of the block */
} gg_ctx;

static void shape_str(const lukv_gguf_tensor *t, char *buf, size_t cap) {
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < t->ndim && k < cap; d++)
    k += (size_t)snprintf(buf + k, cap - k, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
}

static int gg_slot(void *vctx, const char *hf, int64_t rows, int64_t cols, int present, lukv_tensor_ref *slot,
                   lukv_error *err) {
  gg_ctx *x = vctx;
  if (!present) return LUKV_OK;
  const char *P = x->f->path;
  char name[LUKV_GGUF_MAX_NAME];
  if (!lukv_gguf_tensor_name(hf, name, sizeof name))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: %s: no GGUF name for this tensor", P, hf);
  const lukv_gguf_tensor *t = lukv_gguf_find_tensor(x->f, name);
  if (!x->fill) {
    if (!t) return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: tensor missing (HF %s)", P, name, hf);
    if (!lukv_ggml_type_supported(t->type))
      return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                            "%s: %s: type %s not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1)", P, name,
                            lukv_ggml_type_name(t->type));
    /* ggml order: ne[0] is the row length */
    int want_nd = cols ? 2 : 1;
    if (t->ndim != want_nd || t->ne[0] != (cols ? cols : rows) || (cols && t->ne[1] != rows)) {
      char got[128], want[64];
      shape_str(t, got, sizeof got);
      if (cols) snprintf(want, sizeof want, "[%lld, %lld]", (long long)cols, (long long)rows);
      else snprintf(want, sizeof want, "[%lld]", (long long)rows);
      return lukv_error_set(err, LUKV_ERR_SHAPE, "%s: %s: shape %s, expected %s (ggml order, ne0 first)", P, name,
                            got, want);
    }
    x->total += t->n_elem;
    return LUKV_OK;
  }
  float *dst = x->next;
  x->next += t->n_elem;
  int is_q = strstr(name, ".attn_q.") != NULL, is_k = strstr(name, ".attn_k.") != NULL;
  int rc;
  if (!is_q && !is_k) {
    rc = lukv_ggml_dequant(t->type, t->data, t->n_elem, dst);
  } else {
    /* llama.cpp's convert permutes each head's rows from HF's rotate-half
     * order [first half | second half] into interleaved pairs: GGUF row
     * h*d + 2*i + j holds HF row h*d + j*(d/2) + i. Undo exactly that. */
    int heads = is_q ? x->cfg->n_heads : x->cfg->n_kv_heads, d = x->cfg->head_dim;
    int64_t rc_cols = cols ? cols : 1;
    float *tmp = malloc((size_t)t->n_elem * sizeof(float));
    if (!tmp) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: %s: out of memory", P, name);
    rc = lukv_ggml_dequant(t->type, t->data, t->n_elem, tmp);
    for (int h = 0; h < heads && rc == LUKV_OK; h++)
      for (int i = 0; i < d / 2; i++)
        for (int j = 0; j < 2; j++) {
          int64_t src_row = (int64_t)h * d + 2 * i + j, dst_row = (int64_t)h * d + (int64_t)j * (d / 2) + i;
          memcpy(dst + dst_row * rc_cols, tmp + src_row * rc_cols, (size_t)rc_cols * sizeof(float));
        }
    free(tmp);
  }
  if (rc != LUKV_OK)
    return lukv_error_set(err, rc, "%s: %s: cannot dequantise type %s", P, name, lukv_ggml_type_name(t->type));
  slot->data = dst;
  slot->dtype = LUKV_DT_F32;
  slot->rows = rows;
  slot->cols = cols ? cols : 1;
  return LUKV_OK;
}

int lukv_gguf_weights(const lukv_gguf_file *f, lukv_model_config *cfg, lukv_weights *w, lukv_error *err) {
  memset(w, 0, sizeof *w);
  const char *path = f->path;
  int rc = lukv_gguf_config(f, cfg, err);
  if (rc == LUKV_OK) {
    w->layers = calloc((size_t)cfg->n_layers, sizeof *w->layers);
    if (!w->layers) rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: weights: out of memory", path);
  }
  gg_ctx x = {.f = f, .cfg = cfg};
  if (rc == LUKV_OK) rc = lukv_weights_for_each_slot(cfg, w, gg_slot, &x, err);
  if (rc == LUKV_OK) {
    if (x.total > SIZE_MAX / sizeof(float) || !(w->random_block = malloc((size_t)x.total * sizeof(float))))
      rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: weights: cannot allocate %.1f GiB for f32 weights", path,
                          (double)x.total * 4 / (1 << 30));
  }
  if (rc == LUKV_OK) {
    x.fill = 1;
    x.next = w->random_block;
    rc = lukv_weights_for_each_slot(cfg, w, gg_slot, &x, err);
  }
  if (rc != LUKV_OK) lukv_weights_free(w);
  return rc;
}

int lukv_weights_from_gguf(const char *path, lukv_model_config *cfg, lukv_weights *w, lukv_error *err) {
  memset(w, 0, sizeof *w);
  lukv_gguf_file *f = NULL;
  int rc = lukv_gguf_open(path, &f, err);
  if (rc == LUKV_OK) rc = lukv_gguf_weights(f, cfg, w, err);
  lukv_gguf_close(f); /* every tensor now lives in the f32 block */
  return rc;
}
