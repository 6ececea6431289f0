/* GGUF reader (llama.cpp's model format, version 3) and the mapping of a
 * Llama GGUF onto the engine's config and weights.
 *
 * Layout (all little-endian):
 *   "GGUF" u32 version(3) u64 n_tensors u64 n_kv
 *   n_kv x      { string key, u32 type, value }
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   padding to `general.alignment` (default 32), then the data section;
 *   tensor offsets are relative to it and multiples of the alignment.
 * A string is u64 length + bytes (no terminator); an array is u32 element
 * type + u64 count + elements. ne[0] is the innermost dimension (the row), so
 * a ggml [ne0 = in, ne1 = out] matrix is nn.Linear's [out, in] row-major.
 *
 * The file is untrusted input. Opening it checks, before anything is handed
 * out: magic, version, every count against what the remaining bytes could
 * hold (so no allocation is sized by a hostile count), every string length
 * and array inside the file, keys and tensor names non-empty, printable and
 * unique, value types known, bools 0/1, nested arrays at most 4 deep,
 * `general.alignment` a u32 power of two, tensor dims 1..4 each >= 1 with an
 * element count below 2^62, the row length a multiple of the type's block,
 * the ggml type known, offsets aligned, and every tensor's bytes inside the
 * data section without overlapping another. All size arithmetic is done in
 * 64 bits with explicit overflow checks. Errors read "PATH: OBJECT: problem".
 *
 * Data is mmapped read-only; pointers handed out live until lukv_gguf_close.
 */
#ifndef LUKV_GGUF_H
#define LUKV_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "status.h"
#include "weights.h"

#define LUKV_GGUF_VERSION 3
#define LUKV_GGUF_DEFAULT_ALIGNMENT 32
#define LUKV_GGUF_MAX_DIMS 4
/* Longest key or tensor name accepted (ggml: 64 for names; keys are short). */
#define LUKV_GGUF_MAX_NAME 256

/* Metadata value types (the spec's numbering). */
typedef enum lukv_gguf_vtype {
  LUKV_GGUF_U8 = 0, LUKV_GGUF_I8 = 1, LUKV_GGUF_U16 = 2, LUKV_GGUF_I16 = 3,
  LUKV_GGUF_U32 = 4, LUKV_GGUF_I32 = 5, LUKV_GGUF_F32 = 6, LUKV_GGUF_BOOL = 7,
  LUKV_GGUF_STRING = 8, LUKV_GGUF_ARRAY = 9, LUKV_GGUF_U64 = 10, LUKV_GGUF_I64 = 11,
  LUKV_GGUF_F64 = 12
} lukv_gguf_vtype;

/* ggml tensor types this reader can dequantise (others have a known size,
 * so files holding them open, but a model tensor of such a type is
 * LUKV_ERR_UNSUPPORTED). */
enum {
  LUKV_GGML_F32 = 0, LUKV_GGML_F16 = 1, LUKV_GGML_Q4_0 = 2, LUKV_GGML_Q4_1 = 3,
  LUKV_GGML_Q8_0 = 8, LUKV_GGML_BF16 = 30
};

typedef struct lukv_gguf_kv {
  char *key;                 /* owned by the file, NUL-terminated, printable */
  lukv_gguf_vtype type;
  /* scalars: the value widened (BOOL as 0/1 in u) */
  uint64_t u;                /* unsigned types, BOOL */
  int64_t i;                 /* signed types */
  double f;                  /* F32 (exactly widened), F64 */
  /* STRING: bytes in the mapping, NOT terminated */
  const char *str;
  uint64_t str_len;
  /* ARRAY: element type, count and the first element's bytes in the mapping
   * (for strings: the first length prefix) */
  lukv_gguf_vtype arr_type;
  uint64_t arr_n;
  const uint8_t *arr_data;
} lukv_gguf_kv;

typedef struct lukv_gguf_tensor {
  char *name;                /* owned by the file, NUL-terminated, printable */
  uint32_t type;             /* ggml type */
  int ndim;                  /* 1..4 */
  int64_t ne[LUKV_GGUF_MAX_DIMS]; /* ne[0] innermost; unused dims 1 */
  uint64_t n_elem;
  uint64_t offset, nbytes;   /* within the data section */
  const void *data;          /* borrowed from the mapping */
} lukv_gguf_tensor;

typedef struct lukv_gguf_file lukv_gguf_file;

/* Maps and validates PATH. *out is caller-owned: lukv_gguf_close. */
int lukv_gguf_open(const char *path, lukv_gguf_file **out, lukv_error *err);
/* Validates an in-memory image (buf borrowed; must outlive the result);
 * path only names it in messages. */
int lukv_gguf_parse(const char *path, const uint8_t *buf, size_t size, lukv_gguf_file **out,
                    lukv_error *err);
void lukv_gguf_close(lukv_gguf_file *f); /* NULL: no-op */

const char *lukv_gguf_path(const lukv_gguf_file *f);
uint32_t lukv_gguf_alignment(const lukv_gguf_file *f);
uint64_t lukv_gguf_data_offset(const lukv_gguf_file *f); /* start of the data section in the file */
int lukv_gguf_kv_count(const lukv_gguf_file *f);
const lukv_gguf_kv *lukv_gguf_kv_at(const lukv_gguf_file *f, int i);        /* file order */
const lukv_gguf_kv *lukv_gguf_find_kv(const lukv_gguf_file *f, const char *key); /* NULL if absent */
int lukv_gguf_tensor_count(const lukv_gguf_file *f);
const lukv_gguf_tensor *lukv_gguf_tensor_at(const lukv_gguf_file *f, int i); /* file order */
const lukv_gguf_tensor *lukv_gguf_find_tensor(const lukv_gguf_file *f, const char *name);

/* Typed metadata getters. An absent key is LUKV_ERR_FORMAT "missing" when
 * required, else *out = def. Integers: any integer type, value checked
 * against [lo, hi] (RANGE). Floats: F32 or F64 (or an integer), finite.
 * Strings: copied and terminated into buf (cap bytes; longer, or holding a
 * NUL byte, is RANGE). A present key of the wrong type is FORMAT. */
int lukv_gguf_get_int(const lukv_gguf_file *f, const char *key, int required, int64_t def, int64_t lo,
                      int64_t hi, int64_t *out, lukv_error *err);
int lukv_gguf_get_float(const lukv_gguf_file *f, const char *key, int required, double def, double *out,
                        lukv_error *err);
int lukv_gguf_get_string(const lukv_gguf_file *f, const char *key, int required, const char *def, char *buf,
                         size_t cap, lukv_error *err);

/* ---- ggml types and dequantisation -------------------------------------- */

/* "Q4_1" etc., "?" for an unknown id. */
const char *lukv_ggml_type_name(uint32_t type);
/* Elements per block and bytes per block; 0 if the id is unknown. */
int lukv_ggml_type_size(uint32_t type, uint64_t *block_elems, uint64_t *block_bytes);
/* 1 if lukv_ggml_dequant handles type (F32, F16, BF16, Q8_0, Q4_0, Q4_1). */
int lukv_ggml_type_supported(uint32_t type);
/* Dequantises n elements (a multiple of the block size) of type at src (any
 * alignment) to f32 dst [n], with ggml's arithmetic:
 *   Q8_0: f16 d, 32 x int8 q          -> q * d
 *   Q4_0: f16 d, 16 bytes             -> (q - 8) * d, low nibbles = elements 0..15
 *   Q4_1: f16 d, f16 m, 16 bytes      -> q * d + m   (two f32 roundings, no fma)
 * LUKV_ERR_UNSUPPORTED for other types, LUKV_ERR_INVALID for a partial block. */
int lukv_ggml_dequant(uint32_t type, const void *src, uint64_t n, float *dst);

/* ---- Llama GGUF -> engine ---------------------------------------------------
 * general.architecture "llama" (Llama 1/2/3, Mistral and SmolLM GGUFs all use
 * it). Config from llama.block_count, embedding_length, feed_forward_length,
 * attention.head_count(_kv), attention.key_length (default D / Hq),
 * attention.layer_norm_rms_epsilon, context_length, rope.freq_base (default
 * 10000), rope.dimension_count (must equal head_dim), rope.scaling.type
 * none / linear (+ rope.scaling.factor); vocab size from the length of
 * tokenizer.ggml.tokens (else llama.vocab_size, else token_embd's rows).
 * Tied embeddings when output.weight is absent; q/k/v, o and MLP biases when
 * blk.0 has them. Refused (UNSUPPORTED, naming the key or tensor): another
 * architecture, rope scaling other than linear (yarn, ...), a rope_freqs
 * tensor (Llama 3.1 style frequency factors), partial rotary dims. */
int lukv_gguf_config(const lukv_gguf_file *f, lukv_model_config *cfg, lukv_error *err);

/* The llama.cpp name of a Hugging Face tensor name of the engine
 * ("model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight");
 * 0 and "" if it has none. */
int lukv_gguf_tensor_name(const char *hf_name, char *buf, size_t cap);

/* Opens the GGUF at path, fills cfg (lukv_gguf_config) and w with every
 * tensor dequantised into one owned f32 block (w->random_block; the file is
 * unmapped before returning). Q and K rows are put back from llama.cpp's
 * interleaved RoPE layout into HF's rotate-half layout. Errors: FORMAT for a
 * missing tensor, SHAPE for a misshapen one, UNSUPPORTED for a type not
 * handled. w is zeroed first; free with lukv_weights_free. */
int lukv_weights_from_gguf(const char *path, lukv_model_config *cfg, lukv_weights *w, lukv_error *err);

/* The same from an open file (f is only read; close it afterwards). */
int lukv_gguf_weights(const lukv_gguf_file *f, lukv_model_config *cfg, lukv_weights *w, lukv_error *err);

/* 1 if path names a GGUF file by its extension (".gguf", any case). */
int lukv_is_gguf_path(const char *path);

#endif
