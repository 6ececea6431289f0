/* safetensors reader: one file, or the sharded set of a Hugging Face model dir.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 *   {"NAME": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]},
 *    "__metadata__": {..}}
 * then the data section; offsets are relative to its start.
 *
 * The header is untrusted input. Opening a file checks, before any tensor is
 * handed out: N against the file size (and a 100 MB cap), JSON validity,
 * every field's type, integral non-negative shape and offsets, the
 * dtype x shape byte count (overflow-checked) against end - begin, every
 * tensor inside the data section, no duplicate names, and (as the spec asks,
 * so that no bytes hide between tensors) that the tensors tile the data
 * section exactly. Errors read "PATH: TENSOR: problem".
 *
 * Data is mmapped read-only: a tensor's `data` points into the mapping and
 * lives until its file (or set) is closed.
 */
#ifndef LUKV_SAFETENSORS_H
#define LUKV_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define LUKV_ST_MAX_DIMS 8
/* Same cap as the reference Rust implementation: a larger header is hostile. */
#define LUKV_ST_MAX_HEADER ((uint64_t)100000000)

typedef enum lukv_dtype {
  LUKV_DT_BOOL, LUKV_DT_U8, LUKV_DT_I8, LUKV_DT_F8_E4M3, LUKV_DT_F8_E5M2,
  LUKV_DT_I16, LUKV_DT_U16, LUKV_DT_F16, LUKV_DT_BF16,
  LUKV_DT_I32, LUKV_DT_U32, LUKV_DT_F32,
  LUKV_DT_I64, LUKV_DT_U64, LUKV_DT_F64,
  LUKV_DT_COUNT
} lukv_dtype;

/* "BF16" etc.; size in bytes of one element. */
const char *lukv_dtype_name(lukv_dtype dt);
size_t lukv_dtype_size(lukv_dtype dt);

typedef struct lukv_st_tensor {
  char *name;                       /* owned by the file */
  lukv_dtype dtype;
  int ndim;                         /* 0..LUKV_ST_MAX_DIMS */
  int64_t shape[LUKV_ST_MAX_DIMS];
  uint64_t n_elem;                  /* product of shape (1 for a scalar) */
  uint64_t begin, end;              /* byte range in the data section */
  const void *data;                 /* borrowed from the mapping; may be unaligned */
} lukv_st_tensor;

typedef struct lukv_st_file lukv_st_file;

/* Maps and validates PATH. *out is owned by the caller: lukv_st_close. */
int lukv_st_open(const char *path, lukv_st_file **out, lukv_error *err);
/* Validates an in-memory image (buf borrowed, must outlive the result).
 * path only names the source in messages. */
int lukv_st_parse(const char *path, const uint8_t *buf, size_t size, lukv_st_file **out,
                  lukv_error *err);
void lukv_st_close(lukv_st_file *f);  /* NULL: no-op */

const char *lukv_st_path(const lukv_st_file *f);
int lukv_st_count(const lukv_st_file *f);
const lukv_st_tensor *lukv_st_at(const lukv_st_file *f, int i);     /* sorted by name */
const lukv_st_tensor *lukv_st_find(const lukv_st_file *f, const char *name); /* NULL if absent */

/* ---- a model directory's weights ------------------------------------------
 * DIR/model.safetensors if present, otherwise DIR/model.safetensors.index.json
 * whose "weight_map" names the shard of every tensor (shard names are plain
 * file names inside DIR; the index is untrusted too). */
typedef struct lukv_st_set lukv_st_set;

int lukv_st_set_open(const char *dir, lukv_st_set **out, lukv_error *err);
void lukv_st_set_close(lukv_st_set *s);  /* NULL: no-op */
/* The tensor NAME and the path of the file holding it (borrowed, may be NULL
 * when not wanted); NULL if no file holds it. */
const lukv_st_tensor *lukv_st_set_find(const lukv_st_set *s, const char *name, const char **path);
/* Where a missing tensor would have been looked for (for messages). */
const char *lukv_st_set_where(const lukv_st_set *s, const char *name);

/* Converts t (F32, F16 or BF16) to f32 into dst [n_elem]. Other dtypes:
 * LUKV_ERR_UNSUPPORTED. */
int lukv_st_to_f32(const lukv_st_tensor *t, float *dst);
/* The same for n elements of dtype dt at src (any alignment). */
int lukv_convert_to_f32(lukv_dtype dt, const void *src, uint64_t n, float *dst);

float lukv_bf16_to_f32(uint16_t h);
float lukv_f16_to_f32(uint16_t h);

#endif
