#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct lukv_st_file {
  char *path;
  void *map;              /* NULL when parsed from a caller buffer */
  size_t map_size;
  const uint8_t *data;    /* start of the data section */
  uint64_t data_size;
  int n;
  lukv_st_tensor *t;      /* [n] sorted by name */
};

static const struct {
  const char *name;
  size_t size;
} dtype_info[LUKV_DT_COUNT] = {
    [LUKV_DT_BOOL] = {"BOOL", 1}, [LUKV_DT_U8] = {"U8", 1},
    [LUKV_DT_I8] = {"I8", 1},     [LUKV_DT_F8_E4M3] = {"F8_E4M3", 1},
    [LUKV_DT_F8_E5M2] = {"F8_E5M2", 1},
    [LUKV_DT_I16] = {"I16", 2},   [LUKV_DT_U16] = {"U16", 2},
    [LUKV_DT_F16] = {"F16", 2},   [LUKV_DT_BF16] = {"BF16", 2},
    [LUKV_DT_I32] = {"I32", 4},   [LUKV_DT_U32] = {"U32", 4},
    [LUKV_DT_F32] = {"F32", 4},   [LUKV_DT_I64] = {"I64", 8},
    [LUKV_DT_U64] = {"U64", 8},   [LUKV_DT_F64] = {"F64", 8},
};

const char *lukv_dtype_name(lukv_dtype dt) {
  return (unsigned)dt < LUKV_DT_COUNT ? dtype_info[dt].name : "?";
}

size_t lukv_dtype_size(lukv_dtype dt) {
  return (unsigned)dt < LUKV_DT_COUNT ? dtype_info[dt].size : 0;
}

static int dtype_from_name(const char *s, lukv_dtype *dt) {
  for (int i = 0; i < LUKV_DT_COUNT; i++)
    if (strcmp(s, dtype_info[i].name) == 0) {
      *dt = (lukv_dtype)i;
      return 1;
    }
  return 0;
}

/* JSON numbers arrive as doubles: accept only exact non-negative integers
 * below 2^53 (beyond that a double no longer names one integer). */
static int json_u64(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return 0;
  double v = j->valuedouble;
  if (!(v >= 0.0) || v > 9007199254740992.0 || v != floor(v)) return 0;
  *out = (uint64_t)v;
  return 1;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const lukv_st_tensor *)a)->name, ((const lukv_st_tensor *)b)->name);
}

static int cmp_begin(const void *a, const void *b) {
  const lukv_st_tensor *x = *(const lukv_st_tensor *const *)a, *y = *(const lukv_st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static void file_free(lukv_st_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++) free(f->t[i].name);
  free(f->t);
  free(f->path);
  if (f->map) munmap(f->map, f->map_size);
  free(f);
}

void lukv_st_close(lukv_st_file *f) { file_free(f); }

/* One tensor entry of the header. */
static int parse_entry(const char *path, const cJSON *e, lukv_st_tensor *t, uint64_t data_size,
                       lukv_error *err) {
  const char *nm = t->name;
  if (!cJSON_IsObject(e))
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: header entry is not a JSON object", path, nm);
  const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!cJSON_IsString(jd))
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: missing or non-string \"dtype\"", path, nm);
  if (!dtype_from_name(jd->valuestring, &t->dtype))
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: unknown dtype \"%.40s\"", path, nm,
                          jd->valuestring);
  if (!cJSON_IsArray(js))
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: missing or non-array \"shape\"", path, nm);
  int nd = cJSON_GetArraySize(js);
  if (nd > LUKV_ST_MAX_DIMS)
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: %d dimensions (at most %d)", path, nm, nd,
                          LUKV_ST_MAX_DIMS);
  t->ndim = nd;
  /* The element count is bounded by the data section, so overflow of the
   * running product means the header lies. */
  uint64_t n = 1;
  int overflow = 0;
  for (int d = 0; d < nd; d++) {
    uint64_t v;
    if (!json_u64(cJSON_GetArrayItem(js, d), &v))
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: shape[%d] is not a non-negative integer",
                            path, nm, d);
    t->shape[d] = (int64_t)v;
    if (v != 0 && n > UINT64_MAX / v) overflow = 1;
    else n *= v;
  }
  size_t es = lukv_dtype_size(t->dtype);
  if (!overflow && n > UINT64_MAX / es) overflow = 1;
  if (overflow)
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: shape x dtype size overflows 64 bits", path, nm);
  t->n_elem = n;
  if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 ||
      !json_u64(cJSON_GetArrayItem(jo, 0), &t->begin) || !json_u64(cJSON_GetArrayItem(jo, 1), &t->end))
    return lukv_error_set(err, LUKV_ERR_FORMAT,
                          "%s: %s: \"data_offsets\" is not two non-negative integers", path, nm);
  if (t->begin > t->end)
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: data_offsets [%llu, %llu] decrease", path, nm,
                          (unsigned long long)t->begin, (unsigned long long)t->end);
  if (t->end > data_size)
    return lukv_error_set(err, LUKV_ERR_FORMAT,
                          "%s: %s: data_offsets end %llu is beyond the data section (%llu bytes; "
                          "file truncated or header wrong)",
                          path, nm, (unsigned long long)t->end, (unsigned long long)data_size);
  if (n * es != t->end - t->begin)
    return lukv_error_set(err, LUKV_ERR_SHAPE,
                          "%s: %s: %s shape needs %llu bytes but data_offsets span %llu", path, nm,
                          lukv_dtype_name(t->dtype), (unsigned long long)(n * es),
                          (unsigned long long)(t->end - t->begin));
  return LUKV_OK;
}

int lukv_st_parse(const char *path, const uint8_t *buf, size_t size, lukv_st_file **out,
                  lukv_error *err) {
  *out = NULL;
  if (size < 8)
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: header: file is %zu bytes, too short for a safetensors header",
                          path, size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
  if (hlen > size - 8)
    return lukv_error_set(err, LUKV_ERR_FORMAT,
                          "%s: header: length %llu is beyond the end of the file (%zu bytes; truncated?)",
                          path, (unsigned long long)hlen, size);
  if (hlen > LUKV_ST_MAX_HEADER)
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: header: length %llu exceeds the %llu-byte limit", path,
                          (unsigned long long)hlen, (unsigned long long)LUKV_ST_MAX_HEADER);
  /* cJSON wants a terminated buffer; the mapping is not. */
  char *hdr = malloc((size_t)hlen + 1);
  if (!hdr) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: header: out of memory", path);
  memcpy(hdr, buf + 8, (size_t)hlen);
  hdr[hlen] = '\0';
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
  int bad_tail = 0;
  if (root && end) /* writers pad with spaces to 8-byte alignment; nothing else may follow */
    for (const char *p = end; p < hdr + hlen; p++)
      if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') bad_tail = 1;
  free(hdr);
  if (!root || bad_tail || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: header: not a valid JSON object", path);
  }

  lukv_st_file *f = calloc(1, sizeof *f);
  int rc = LUKV_OK;
  if (!f || !(f->path = strdup(path))) {
    free(f);
    cJSON_Delete(root);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: header: out of memory", path);
  }
  f->data = buf + 8 + hlen;
  f->data_size = size - 8 - hlen;
  int count = 0;
  for (const cJSON *e = root->child; e; e = e->next)
    if (strcmp(e->string, "__metadata__") != 0) count++;
  f->t = calloc(count ? (size_t)count : 1, sizeof *f->t);
  if (!f->t) rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: header: out of memory", path);
  for (const cJSON *e = root->child; e && rc == LUKV_OK; e = e->next) {
    if (strcmp(e->string, "__metadata__") == 0) {
      if (!cJSON_IsObject(e))
        rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: __metadata__: not a JSON object", path);
      continue;
    }
    lukv_st_tensor *t = &f->t[f->n];
    if (!(t->name = strdup(e->string))) {
      rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: header: out of memory", path);
      break;
    }
    f->n++;
    rc = parse_entry(path, e, t, f->data_size, err);
    if (rc == LUKV_OK) t->data = f->data + t->begin;
  }
  cJSON_Delete(root);
  if (rc == LUKV_OK && f->n > 1) {
    qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_name);
    for (int i = 1; i < f->n && rc == LUKV_OK; i++)
      if (strcmp(f->t[i - 1].name, f->t[i].name) == 0)
        rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: tensor named twice in the header", path,
                            f->t[i].name);
  }
  if (rc == LUKV_OK) { /* tensors must tile [0, data_size) without gaps or overlaps */
    const lukv_st_tensor **by = malloc((f->n ? (size_t)f->n : 1) * sizeof *by);
    if (!by) rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: header: out of memory", path);
    for (int i = 0; by && i < f->n; i++) by[i] = &f->t[i];
    if (by) qsort(by, (size_t)f->n, sizeof *by, cmp_begin);
    uint64_t at = 0;
    for (int i = 0; by && i < f->n && rc == LUKV_OK; i++) {
      if (by[i]->begin != at)
        rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: data_offsets begin %llu, expected %llu "
                            "(tensors overlap or leave a gap)", path, by[i]->name,
                            (unsigned long long)by[i]->begin, (unsigned long long)at);
      at = by[i]->end;
    }
    if (rc == LUKV_OK && at != f->data_size)
      rc = lukv_error_set(err, LUKV_ERR_FORMAT,
                          "%s: data: %llu trailing bytes after the last tensor", path,
                          (unsigned long long)(f->data_size - at));
    free(by);
  }
  if (rc != LUKV_OK) {
    file_free(f);
    return rc;
  }
  *out = f;
  return LUKV_OK;
}

int lukv_st_open(const char *path, lukv_st_file **out, lukv_error *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return lukv_error_set(err, LUKV_ERR_IO, "%s: file: cannot open (%s)", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return lukv_error_set(err, LUKV_ERR_IO, "%s: file: not a regular file", path);
  }
  size_t size = (size_t)st.st_size;
  if (size < 8) {
    close(fd);
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: header: file is %zu bytes, too short for a safetensors header",
                          path, size);
  }
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return lukv_error_set(err, LUKV_ERR_IO, "%s: file: mmap failed (%s)", path, strerror(errno));
  int rc = lukv_st_parse(path, map, size, out, err);
  if (rc != LUKV_OK) {
    munmap(map, size);
    return rc;
  }
  (*out)->map = map;
  (*out)->map_size = size;
  return LUKV_OK;
}

const char *lukv_st_path(const lukv_st_file *f) { return f->path; }
int lukv_st_count(const lukv_st_file *f) { return f->n; }
const lukv_st_tensor *lukv_st_at(const lukv_st_file *f, int i) {
  return i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const lukv_st_tensor *lukv_st_find(const lukv_st_file *f, const char *name) {
  lukv_st_tensor key = {.name = (char *)name};
  return f->n ? bsearch(&key, f->t, (size_t)f->n, sizeof *f->t, cmp_name) : NULL;
}

/* ---- conversion ---------------------------------------------------------- */

float lukv_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float lukv_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13); /* inf / nan */
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else { /* subnormal: value = man * 2^-24, exact in f32 */
    float f = (float)man * 5.9604644775390625e-8f;
    memcpy(&u, &f, 4);
    u |= sign;
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

int lukv_convert_to_f32(lukv_dtype dt, const void *src, uint64_t n, float *dst) {
  const uint8_t *p = src;
  /* memcpy per element: the data section gives no alignment guarantee. */
  switch (dt) {
  case LUKV_DT_F32:
    memcpy(dst, p, (size_t)n * 4);
    return LUKV_OK;
  case LUKV_DT_BF16:
    for (uint64_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, p + 2 * i, 2);
      dst[i] = lukv_bf16_to_f32(h);
    }
    return LUKV_OK;
  case LUKV_DT_F16:
    for (uint64_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, p + 2 * i, 2);
      dst[i] = lukv_f16_to_f32(h);
    }
    return LUKV_OK;
  default:
    return LUKV_ERR_UNSUPPORTED;
  }
}

int lukv_st_to_f32(const lukv_st_tensor *t, float *dst) {
  return lukv_convert_to_f32(t->dtype, t->data, t->n_elem, dst);
}

/* ---- model directory ------------------------------------------------------ */

typedef struct map_entry {
  char *name;
  int shard;
} map_entry;

struct lukv_st_set {
  char *dir;
  char *index_path;       /* NULL for a single file */
  int n_files;
  lukv_st_file **files;
  char **file_paths;      /* [n_files] */
  int n_map;              /* 0 for a single file */
  map_entry *map;         /* sorted by name */
};

void lukv_st_set_close(lukv_st_set *s) {
  if (!s) return;
  for (int i = 0; i < s->n_files; i++) {
    lukv_st_close(s->files[i]);
    free(s->file_paths[i]);
  }
  free(s->files);
  free(s->file_paths);
  for (int i = 0; i < s->n_map; i++) free(s->map[i].name);
  free(s->map);
  free(s->index_path);
  free(s->dir);
  free(s);
}

static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static int cmp_map(const void *a, const void *b) {
  return strcmp(((const map_entry *)a)->name, ((const map_entry *)b)->name);
}

static int read_small_file(const char *path, char **out, size_t *len, size_t limit, lukv_error *err) {
  *out = NULL;
  FILE *fp = fopen(path, "rb");
  if (!fp) return lukv_error_set(err, LUKV_ERR_IO, "%s: file: cannot open (%s)", path, strerror(errno));
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    size_t got = fread(buf + n, 1, cap - n, fp);
    n += got;
    if (n < cap) break;
    if (cap >= limit) {
      free(buf);
      fclose(fp);
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: file: larger than %zu bytes", path, limit);
    }
    cap *= 2;
    char *nb = realloc(buf, cap + 1);
    if (!nb) free(buf);
    buf = nb;
  }
  int ioerr = ferror(fp);
  fclose(fp);
  if (!buf) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: file: out of memory", path);
  if (ioerr) {
    free(buf);
    return lukv_error_set(err, LUKV_ERR_IO, "%s: file: read error", path);
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return LUKV_OK;
}

static int set_open_index(lukv_st_set *s, const char *ipath, lukv_error *err) {
  char *text;
  size_t len = 0;
  int rc = read_small_file(ipath, &text, &len, (size_t)1 << 28, err);
  if (rc != LUKV_OK) return rc;
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
  if (!root || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: index: not a valid JSON object", ipath);
  }
  if (!cJSON_IsObject(wm)) {
    cJSON_Delete(root);
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: weight_map: missing or not an object", ipath);
  }
  int n = cJSON_GetArraySize(wm);
  s->map = calloc(n ? (size_t)n : 1, sizeof *s->map);
  s->files = calloc(n ? (size_t)n : 1, sizeof *s->files);
  s->file_paths = calloc(n ? (size_t)n : 1, sizeof *s->file_paths);
  if (!s->map || !s->files || !s->file_paths) rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", ipath);
  for (const cJSON *e = wm->child; e && rc == LUKV_OK; e = e->next) {
    const char *shard = cJSON_IsString(e) ? e->valuestring : NULL;
    /* Shards are siblings of the index: a path in there could read any file. */
    if (!shard || !shard[0] || strchr(shard, '/') || strcmp(shard, ".") == 0 || strcmp(shard, "..") == 0) {
      rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: weight_map.%s: shard is not a plain file name", ipath,
                          e->string);
      break;
    }
    int k = 0;
    while (k < s->n_files && strcmp(strrchr(s->file_paths[k], '/') + 1, shard) != 0) k++;
    if (k == s->n_files) {
      if (!(s->file_paths[k] = path_join(s->dir, shard))) {
        rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", ipath);
        break;
      }
      s->n_files++;
    }
    if (!(s->map[s->n_map].name = strdup(e->string))) {
      rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", ipath);
      break;
    }
    s->map[s->n_map++].shard = k;
  }
  cJSON_Delete(root);
  if (rc != LUKV_OK) return rc;
  qsort(s->map, (size_t)s->n_map, sizeof *s->map, cmp_map);
  for (int i = 1; i < s->n_map; i++)
    if (strcmp(s->map[i - 1].name, s->map[i].name) == 0)
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: weight_map.%s: named twice", ipath, s->map[i].name);
  for (int k = 0; k < s->n_files; k++) {
    rc = lukv_st_open(s->file_paths[k], &s->files[k], err);
    if (rc != LUKV_OK) return rc;
  }
  /* The index must not promise what a shard lacks. */
  for (int i = 0; i < s->n_map; i++)
    if (!lukv_st_find(s->files[s->map[i].shard], s->map[i].name))
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: listed in %s but not in the shard",
                            s->file_paths[s->map[i].shard], s->map[i].name, ipath);
  return LUKV_OK;
}

int lukv_st_set_open(const char *dir, lukv_st_set **out, lukv_error *err) {
  *out = NULL;
  lukv_st_set *s = calloc(1, sizeof *s);
  if (!s || !(s->dir = strdup(dir))) {
    free(s);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", dir);
  }
  int rc;
  char *single = path_join(dir, "model.safetensors");
  char *index = path_join(dir, "model.safetensors.index.json");
  if (!single || !index) {
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", dir);
  } else if (access(single, F_OK) == 0) {
    s->files = calloc(1, sizeof *s->files);
    s->file_paths = calloc(1, sizeof *s->file_paths);
    if (!s->files || !s->file_paths) {
      rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", dir);
    } else {
      s->file_paths[0] = single;
      single = NULL;
      s->n_files = 1;
      rc = lukv_st_open(s->file_paths[0], &s->files[0], err);
    }
  } else if (access(index, F_OK) == 0) {
    s->index_path = index;
    index = NULL;
    rc = set_open_index(s, s->index_path, err);
  } else {
    rc = lukv_error_set(err, LUKV_ERR_IO,
                        "%s: weights: neither model.safetensors nor model.safetensors.index.json found", dir);
  }
  free(single);
  free(index);
  if (rc != LUKV_OK) {
    lukv_st_set_close(s);
    return rc;
  }
  *out = s;
  return LUKV_OK;
}

const lukv_st_tensor *lukv_st_set_find(const lukv_st_set *s, const char *name, const char **path) {
  int k = 0;
  if (s->index_path) {
    map_entry key = {.name = (char *)name};
    const map_entry *e = bsearch(&key, s->map, (size_t)s->n_map, sizeof *s->map, cmp_map);
    if (!e) return NULL;
    k = e->shard;
  } else if (s->n_files == 0) {
    return NULL;
  }
  if (path) *path = s->file_paths[k];
  return lukv_st_find(s->files[k], name);
}

const char *lukv_st_set_where(const lukv_st_set *s, const char *name) {
  if (s->index_path) return s->index_path;
  if (s->n_files == 1) return s->file_paths[0];
  (void)name;
  return s->dir;
}
