/* liblukv — ship a head-level KV-cache budget table into an inference engine.
 *
 * After prefill, lukv keeps only the most useful tokens of each (layer, KV
 * head), as many as a budget table (budgets.h5, made by lukv-solve) or a
 * baseline allocator says, in a physically smaller cache; decode tokens are
 * appended to it and decode attention runs over it.
 *
 *   lukv_table_open    budgets.h5 -> table
 *   lukv_cache_create  model shape, batch, backend -> cache
 *   per layer, after its prefill:
 *     lukv_compress    K, V [B, Hkv, T, d] (+ window queries) -> segments
 *   per decode step, per layer:
 *     lukv_append      K_new, V_new [B, Hkv, d] -> one more row per segment
 *     lukv_decode_attention  q [B, Hq, d] -> out [B, Hq, d]
 *   lukv_cache_memory  bytes held vs a full cache
 *
 * Step-by-step integration guide: docs/runtime.md. Examples:
 * runtime/examples/minimal.c (CPU), runtime/examples/minimal_cuda.c (CUDA,
 * with a captured decode step).
 *
 * Conventions (sqlite / libuv style)
 *   - Handles are opaque. Every create/open has a destroy/close; passing NULL
 *     to a destroy/close is a no-op.
 *   - Functions that can fail return LUKV_OK (0) or a negative status
 *     (lukv_status.h); lukv_strerror() names the code. They never exit(),
 *     never abort, and return a status (never crash) on a NULL pointer, an
 *     out-of-range index or a mismatched shape. (The extent of a raw tensor
 *     pointer cannot be checked: buffers must hold the shapes stated.)
 *   - Error text: the last failed call on a handle leaves one line in the
 *     handle, read with lukv_cache_errmsg() / lukv_table_errmsg(). A call
 *     that succeeds does not clear it. When create/open itself fails there is
 *     no handle: *out is set to NULL and lukv_cache_errmsg(NULL) /
 *     lukv_table_errmsg(NULL) return that failure's text (kept per thread).
 *   - Ownership is stated on every pointer. "Borrowed" inputs are only read
 *     during the call; nothing keeps a caller pointer after a call returns.
 *   - Threads: a cache is used by one thread at a time. A table is immutable
 *     after open; lukv_compress only reads it, so one table may serve caches
 *     on several threads. Other calls on one table must not run concurrently.
 *   - Shapes are row-major, last index fastest, e.g. K [B, Hkv, T, d] puts
 *     element (b, h, t, c) at ((b*Hkv + h)*T + t)*d + c.
 *   - Notation: L layers, Hkv KV heads, Hq query heads (a multiple of Hkv;
 *     query head q reads KV head q / (Hq/Hkv), as HF's repeat_kv), d head
 *     dim, B sequences, T_b the prompt length of sequence b, s sink tokens,
 *     w observation-window tokens. "Mid" tokens of a sequence are the
 *     positions [s, T_b - w): only they compete; sink and window are always
 *     kept.
 *   - KV data is bf16 (IEEE binary32 with the low 16 bits dropped, stored as
 *     uint16_t), the engines' usual storage type. Arithmetic is in f32.
 *   - Backends: LUKV_BACKEND_CPU takes host pointers everywhere.
 *     LUKV_BACKEND_CUDA (only in a build configured with CUDA; elsewhere
 *     lukv_cache_create refuses it with LUKV_ERR_UNSUPPORTED) takes device
 *     pointers for tensor arguments (k, v, q_window, q, out, k_new, v_new;
 *     16-byte aligned, as cudaMalloc returns them) and host pointers for
 *     small integer arrays (context_len, keep, positions) and for the
 *     scores of lukv_compress_scores. It runs on the device current when
 *     the cache was created, on the stream set with lukv_cache_set_stream
 *     (default: the legacy default stream). Calls return once the work is
 *     queued: outputs are ready in stream order, except where a call copies
 *     to the host (lukv_compress, lukv_compress_scores,
 *     lukv_cache_read_segment, lukv_cache_sync), which waits.
 *   - CUDA graphs (CUDA backend): lukv_append and lukv_decode_attention
 *     allocate nothing, never wait for the device and read every segment
 *     length from device memory, so a decode step may be captured
 *     (cudaStreamBeginCapture on the cache's stream) and replayed: each
 *     replay of a captured lukv_append writes the next row of every segment
 *     (the append kernel advances a per-layer device counter itself), and
 *     a captured lukv_decode_attention attends to the rows present at
 *     replay time. While capturing, the host's segment lengths are not
 *     advanced; after replays call lukv_cache_sync before reading lengths
 *     (lukv_cache_segment, lukv_cache_read_segment) or calling lukv_append
 *     uncaptured. A replayed append on a full layer writes nothing and
 *     raises a flag that the next lukv_cache_sync reports (LUKV_ERR_RANGE):
 *     replay at most decode_reserve - (rows appended so far) times.
 *     Compression, lukv_cache_reset and lukv_cache_destroy free buffers a
 *     graph points to: capture after the last lukv_compress of the batch
 *     and re-capture after any of them. Nothing else may be captured.
 */
#ifndef LUKV_H
#define LUKV_H

#include <stdint.h>

#include "lukv_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* Budget tables (budgets.h5)                                               */
/* ======================================================================== */

typedef struct lukv_table lukv_table;

/* Opens and validates budgets.h5 (format: docs/formats.md) and loads it into
 * memory; the file is closed again before return.
 * path: borrowed. *out: on success a table the caller owns (lukv_table_close);
 * on failure NULL, and lukv_table_errmsg(NULL) gives e.g.
 * "b.h5: /keep_fraction: shape [99,6,3] but expected [99,6,2]".
 * Errors: LUKV_ERR_INVALID (NULL argument), and any status of the reader:
 * LUKV_ERR_IO, _FORMAT, _VERSION, _SHAPE, _RANGE, _NOMEM. */
int lukv_table_open(const char *path, lukv_table **out);

/* Frees the table; NULL is a no-op. Caches never keep a table pointer, so a
 * table may be closed while caches compressed with it live on. */
void lukv_table_close(lukv_table *table);

/* Last error text of the table ("" if no call on it failed); for a NULL table,
 * the text of this thread's last failed lukv_table_open. Owned by the table
 * (or the library); valid until the next failing call on it or its close. */
const char *lukv_table_errmsg(const lukv_table *table);

/* Model shape the table was solved for: L layers, Hkv KV heads per layer.
 * n_layers, n_kv_heads: out. */
int lukv_table_shape(lukv_table *table, int *n_layers, int *n_kv_heads);

/* Everything else a caller may want to check before use. */
typedef struct lukv_table_info {
  const char *model_name; /* human name of the model */
  const char *model_hash; /* identifies the exact weights */
  const char *scorer;     /* the scorer the table was solved for ("snapkv", "keydiff") */
  int n_layers;           /* L */
  int n_kv_heads;         /* Hkv */
  int n_q_heads;          /* Hq */
  int head_dim;           /* d */
  int sink;               /* s the table was calibrated with */
  int window;             /* w the table was calibrated with */
  int n_ratios;           /* R >= 1 */
  const float *ratios;    /* [R] compression ratios rho, strictly increasing in (0, 1) */
} lukv_table_info;

/* Fills *out. Every pointer in it is owned by the table and valid until
 * lukv_table_close. */
int lukv_table_get_info(lukv_table *table, lukv_table_info *out);

/* Keep counts for compression ratio `ratio` (one of the table's ratios,
 * matched within 1e-6) and a prompt of T = context_len tokens — the runtime
 * rule (DESIGN §3), per layer l:
 *   x_h    = keep_fraction[ratio, l, h] * T          (in double, exact)
 *   keep_h = floor(x_h)
 *   the layer's remainder floor(sum_h x_h) - sum_h keep_h goes, one token
 *   each, to the heads with the largest fractional parts x_h - keep_h
 *   (ties: lower head first);
 *   keep_h = clamp(keep_h, min(T, s + w), T)   with the table's s and w.
 * The clamp can lift a head (the solver never gives a head less than its
 * g_min anyway), so a layer may then hold more than its rounded total.
 * floor(sum) forgives binary rounding: a sum within 1e-9 (relative) below an
 * integer counts as that integer, so fractions that add up to an integer
 * number of tokens are not shorted by one.
 * keep_out: out, caller-owned [L * Hkv] (layer-major: keep_out[l*Hkv + h]).
 * Errors: LUKV_ERR_INVALID (NULL, context_len < 1, ratio NaN),
 * LUKV_ERR_NOTFOUND (ratio not in the table). */
int lukv_table_keep(lukv_table *table, double ratio, int context_len, int32_t *keep_out);

/* ======================================================================== */
/* Caches                                                                   */
/* ======================================================================== */

typedef struct lukv_cache lukv_cache;

typedef enum lukv_backend_kind {
  LUKV_BACKEND_CPU = 0,  /* plain-C reference: host memory, single thread */
  LUKV_BACKEND_CUDA = 1  /* device memory (see "Backends" above); head_dim a multiple
                          * of 8 and <= 256, batch * n_kv_heads <= 65535;
                          * LUKV_ERR_UNSUPPORTED in a build without CUDA or with
                          * no usable device */
} lukv_backend_kind;

typedef enum lukv_kv_dtype {
  LUKV_KV_BF16 = 0       /* bf16 storage (uint16_t), f32 arithmetic */
} lukv_kv_dtype;

typedef struct lukv_cache_config {
  int n_layers;           /* L >= 1 */
  int n_kv_heads;         /* Hkv >= 1 */
  int n_q_heads;          /* Hq >= 1, a multiple of Hkv */
  int head_dim;           /* d >= 1 */
  int batch;              /* B >= 1 sequences, compressed and decoded together */
  int max_context;        /* largest prompt length T_b lukv_compress accepts, >= 1 */
  int decode_reserve;     /* rows reserved per segment for appended tokens, >= 0 */
  lukv_backend_kind backend;
  lukv_kv_dtype dtype;
  /* Optional, borrowed (copied by create): the served model's hash. When set,
   * a table whose model_hash differs is refused (LUKV_ERR_INVALID). */
  const char *model_hash;
} lukv_cache_config;

/* Zeroes cfg and sets the defaults: CPU backend, bf16, decode_reserve 0, no
 * model hash. The shape fields must still be filled in. */
void lukv_cache_config_init(lukv_cache_config *cfg);

/* Creates an empty cache: no layer holds data until it is compressed.
 *
 * Capacity planning: segment storage is sized at compress time from the keep
 * counts, per layer: one K and one V buffer of sum_{b,h} capacity_{b,h} rows
 * of d elements, capacity = keep + decode_reserve. Nothing is allocated for
 * an uncompressed layer, and appends never move data (the buffers are
 * allocated once per compression, never grown). max_context bounds the
 * inputs; it is not preallocated.
 * cfg: borrowed. *out: on success a cache the caller owns
 * (lukv_cache_destroy); on failure NULL (text: lukv_cache_errmsg(NULL)).
 * Errors: LUKV_ERR_INVALID (NULL, a field out of range, Hq % Hkv != 0),
 * LUKV_ERR_TOO_LARGE (the worst-case layer would not be addressable),
 * LUKV_ERR_UNSUPPORTED (LUKV_BACKEND_CUDA in a build without CUDA, on a
 * machine without a usable device, or with a head_dim or a batch * n_kv_heads
 * the kernels do not take), LUKV_ERR_CUDA (a CUDA call failed), LUKV_ERR_NOMEM. */
int lukv_cache_create(const lukv_cache_config *cfg, lukv_cache **out);

/* Frees the cache and all its segment storage; NULL is a no-op. */
void lukv_cache_destroy(lukv_cache *cache);

/* Last error text of the cache ("" if no call on it failed); for NULL, the
 * text of this thread's last failed lukv_cache_create. Owned by the cache
 * (or the library); valid until the next failing call on it or its destroy. */
const char *lukv_cache_errmsg(const lukv_cache *cache);

/* LUKV_OK if the table was solved for this cache's model: same L, Hkv, Hq and
 * head_dim (LUKV_ERR_SHAPE otherwise, naming the first difference) and, when
 * the cache has a model_hash, the same hash (LUKV_ERR_INVALID otherwise).
 * lukv_compress runs the same check. The table is only read. */
int lukv_cache_check_table(lukv_cache *cache, lukv_table *table);

/* How each head's keep count is chosen. */
typedef enum lukv_keep_policy {
  /* The table's keep fractions at `ratio`, with the runtime rule of
   * lukv_table_keep at each sequence's T_b. */
  LUKV_KEEP_TABLE = 0,
  /* Baselines, for evaluation against the table. The budget of a sequence
   * is the same for all three: per layer Bl = floor(Hkv * (1 - ratio) * T_b)
   * tokens (with the 1e-9 relative tolerance above: ratio 0.8 of 1000 tokens
   * is 200, not 199), L * Bl in all. Each allocator's keep counts sum to
   * exactly that whenever Bl lies in [Hkv*min(T_b, s+w), Hkv*T_b]
   * (otherwise every head sits at the nearer bound). */
  LUKV_KEEP_UNIFORM = 1,  /* every head of a layer the same (remainder to lower heads) */
  LUKV_KEEP_PYRAMID = 2,  /* PyramidKV: per-head budget linear in depth,
                           * layer 0 largest, layer L-1 = avg / beta, mean avg
                           * = (1 - ratio) * T_b; the line is shifted as a
                           * whole where clamping to [min(T,s+w), T] bites */
  LUKV_KEEP_ADAKV = 3,    /* Ada-KV: per layer, each head gets s + w plus a
                           * guaranteed alpha share of its uniform share of the
                           * layer's mid budget (Bl - Hkv*(s+w)); the rest of
                           * that budget goes to the layer's highest mid-token
                           * scores across all its heads */
  /* Caller-chosen counts `keep` [B, Hkv]; each in [min(T_b, s+w), T_b]. */
  LUKV_KEEP_EXPLICIT = 4
} lukv_keep_policy;

#define LUKV_FROM_TABLE (-1) /* sink / window: the table's value (see below) */

typedef struct lukv_compress_args {
  int layer;             /* 0 <= layer < L */
  /* Prefill keys (RoPE already applied) and values of this layer,
   * [B, Hkv, t_max, d] bf16; rows t >= T_b of sequence b are ignored.
   * Borrowed; CPU backend: host memory; CUDA: device memory. */
  const void *k;
  const void *v;
  /* Observation-window queries (RoPE applied) [B, Hq, w, d] bf16: row i of
   * sequence b is the query at position T_b - w + i. Needed by "snapkv"
   * when w > 0; ignored by "keydiff" (may be NULL). Borrowed. */
  const void *q_window;
  int t_max;             /* T axis length (stride) of k and v, >= 1 */
  /* [B] prompt lengths, 1 <= T_b <= min(t_max, max_context); NULL: every
   * sequence has t_max tokens. Borrowed, host memory for every backend. */
  const int32_t *context_len;
  /* Scorer ranking the mid tokens of each head, highest kept first (ties:
   * the lower position):
   *   "snapkv"  per query head q of the group, a_q[j] = sum over the window
   *             rows i of softmax_j(scale * q_i . k_j) (causal: the softmax
   *             runs over keys j <= position of i, context keys only); then
   *             max-pooled over j in [0, T_b) with kernel pool_kernel (odd,
   *             same size, out-of-range positions take no part); then
   *             averaged over the group's query heads.
   *   "keydiff" -cos(k_j, m) with m the mean of the L2-normalised keys
   *             k_j / ||k_j|| over j < T_b (a zero key scores 0).
   * NULL: the table's scorer with a table, "snapkv" without. A scorer that
   * differs from the table's is refused. Borrowed. */
  const char *scorer;
  /* s, w >= 0. LUKV_FROM_TABLE: the table's value with a table, 4 / 32
   * without. An explicit value that differs from the table's is refused. */
  int sink;
  int window;
  int pool_kernel;       /* snapkv max-pool kernel, odd >= 1 (default 7) */
  float scale;           /* snapkv softmax scale; 0: 1/sqrt(d) */
  lukv_keep_policy policy;
  double ratio;          /* compression rho: a table ratio, or in [0, 1] for the baselines */
  /* Required by LUKV_KEEP_TABLE. With any policy, a table also supplies the
   * defaults above and is checked against the cache. Borrowed, only read. */
  lukv_table *table;
  double adakv_alpha;    /* LUKV_KEEP_ADAKV guaranteed share, [0, 1] (default 0.2) */
  double pyramid_beta;   /* LUKV_KEEP_PYRAMID beta > 0 (default 20) */
  const int32_t *keep;   /* LUKV_KEEP_EXPLICIT: [B, Hkv] host, borrowed */
} lukv_compress_args;

/* Zeroes a and sets the defaults: policy LUKV_KEEP_TABLE, scorer NULL,
 * sink = window = LUKV_FROM_TABLE, pool_kernel 7, scale 0, adakv_alpha 0.2,
 * pyramid_beta 20. */
void lukv_compress_args_init(lukv_compress_args *a);

/* Compresses one layer after its prefill: for every sequence b and KV head h
 * decides keep_{b,h} (policy), ranks the mid tokens (scorer), keeps sink,
 * window and the top keep - s - w mid tokens, and copies them into the
 * head's segment in ORIGINAL token order (the keys already carry RoPE, so
 * rows are copied, never re-rotated, and row i precedes row i+1 in the
 * prompt; lukv_cache_read_segment reports each row's position).
 * The layer's previous segments, if any, are replaced (a new batch). A call
 * refused for its arguments leaves the layer as it was; a failure while
 * building the new segments (out of memory) leaves it uncompressed.
 * Errors: LUKV_ERR_INVALID (NULL, bad index, bad option, policy without its
 * input, table calibrated with another scorer / sink / window / model hash),
 * LUKV_ERR_SHAPE (table for another model shape), LUKV_ERR_RANGE (a T_b or an
 * explicit keep count out of range), LUKV_ERR_NOTFOUND (ratio not in the
 * table, unknown scorer), LUKV_ERR_NOMEM. */
int lukv_compress(lukv_cache *cache, const lukv_compress_args *a);

/* The scores lukv_compress would rank by, without touching the cache:
 * scores: out, caller-owned host [B, Hkv, t_max] f32; for sequence b,
 * positions t < T_b hold the scorer's value (sink and window included, for
 * inspection; they are kept whatever their score), t >= T_b hold -INFINITY.
 * Uses a->k, a->q_window, a->t_max, a->context_len, a->scorer, a->sink,
 * a->window, a->pool_kernel, a->scale, a->table (defaults and checks). */
int lukv_compress_scores(lukv_cache *cache, const lukv_compress_args *a, float *scores);

/* Appends one decode token to every segment of `layer`:
 * k_new, v_new: borrowed [B, Hkv, d] bf16. The row lands at
 * offset + length of each segment; no existing row moves. Its position is
 * recorded as T_b + (number of tokens appended before it).
 * Engines append the current token before calling lukv_decode_attention for
 * it. All-or-nothing: if any segment is full (length == capacity) nothing is
 * written and LUKV_ERR_RANGE is returned.
 * CUDA: the row lands at offset + keep + the device's count of rows appended
 * to the layer (see "CUDA graphs" above); the fullness check uses the host
 * lengths, which match the device unless captured appends were replayed
 * without a lukv_cache_sync.
 * Errors: LUKV_ERR_INVALID (NULL, bad layer, layer not compressed, CUDA: a
 * pointer not 16-byte aligned), LUKV_ERR_RANGE (a segment full),
 * LUKV_ERR_CUDA (a launch failed). */
int lukv_append(lukv_cache *cache, int layer, const void *k_new, const void *v_new);

/* Decode attention of one query token per sequence over its compacted
 * segments: out[b, q] = sum_i softmax_i(scale * q[b, q] . K_i) V_i over the
 * rows i of segment (b, q / (Hq/Hkv)).
 * q: borrowed [B, Hq, d] bf16; out: caller-owned [B, Hq, d] bf16 (an empty
 * segment gives zeros); scale: 0 means 1/sqrt(d).
 * CUDA: split-KV flash-decoding; segment lengths are read on the device.
 * Errors: LUKV_ERR_INVALID (NULL, bad layer, layer not compressed, scale
 * NaN or negative, CUDA: a pointer not 16-byte aligned), LUKV_ERR_CUDA. */
int lukv_decode_attention(lukv_cache *cache, int layer, const void *q, void *out, float scale);

/* Memory of the compressed layers, K and V payload in bytes (exact):
 *   held_bytes = sum over compressed layers, sequences b, KV heads h of
 *                capacity_{b,h} * d * 2 (K and V) * sizeof(bf16)
 *              = what the backend allocated for segment storage;
 *   full_bytes = the same sum with capacity T_b + decode_reserve: what an
 *                uncompressed cache would hold for the same prompts and the
 *                same decode room.
 * Host-side bookkeeping (segment table, positions: 4 bytes per row plus
 * 24 bytes per segment) is not counted. Either pointer may be NULL. */
int lukv_cache_memory(lukv_cache *cache, uint64_t *held_bytes, uint64_t *full_bytes);

/* One (layer, sequence, KV head) segment. */
typedef struct lukv_segment {
  int64_t offset;      /* first row in the layer's K / V buffers */
  int32_t length;      /* rows in use: keep + tokens appended so far */
  int32_t capacity;    /* keep + decode_reserve; never changes until recompression */
  int32_t keep;        /* rows kept by compression */
  int32_t context_len; /* T_b of the prompt it was compressed from */
} lukv_segment;

/* Fills *out for segment (layer, seq, head).
 * Errors: LUKV_ERR_INVALID (NULL, index out of range, layer not compressed). */
int lukv_cache_segment(lukv_cache *cache, int layer, int seq, int head, lukv_segment *out);

/* Copies the segment's rows out (to host memory): k, v: caller-owned
 * [max_rows, d] bf16; positions: caller-owned [max_rows] int32, the original
 * position of each row (ascending). Any of the three may be NULL.
 * Errors: LUKV_ERR_INVALID (NULL cache, bad index, layer not compressed),
 * LUKV_ERR_RANGE (max_rows < the segment's length). */
int lukv_cache_read_segment(lukv_cache *cache, int layer, int seq, int head, void *k, void *v,
                            int32_t *positions, int max_rows);

/* The layer's raw K and V buffers, [rows, d] bf16 each, in backend memory
 * (CPU: host), for engines bringing their own attention kernel with
 * lukv_cache_segment's offsets and lengths (CUDA: device pointers). Owned by the cache; valid until
 * the layer is recompressed, lukv_cache_reset or lukv_cache_destroy —
 * appends never move them. Any out pointer may be NULL.
 * Errors: LUKV_ERR_INVALID (NULL cache, bad layer, layer not compressed). */
int lukv_cache_layer_buffers(lukv_cache *cache, int layer, void **k, void **v, int64_t *rows);

/* Frees every layer's segments (back to the state after create), e.g.
 * before compressing a new batch. */
int lukv_cache_reset(lukv_cache *cache);

/* CUDA backend: the stream (a cudaStream_t passed as void *) that all later
 * work of the cache is queued on; NULL: the legacy default stream. Capture
 * needs a stream of your own. The cache keeps the handle, not ownership:
 * the stream must outlive its use by the cache.
 * Errors: LUKV_ERR_UNSUPPORTED (a non-NULL stream on the CPU backend). */
int lukv_cache_set_stream(lukv_cache *cache, void *stream);

/* Waits for the cache's queued work and brings the host's view of every
 * compressed layer (segment lengths, positions of appended rows) up to the
 * device's, e.g. after replaying a captured decode step. A no-op on the CPU
 * backend. Must not be called while the stream is being captured.
 * Errors: LUKV_ERR_RANGE (a replayed append found a layer full and dropped
 * its rows; reported once), LUKV_ERR_INVALID (capturing), LUKV_ERR_CUDA. */
int lukv_cache_sync(lukv_cache *cache);

/* ======================================================================== */
/* bf16 helpers                                                             */
/* ======================================================================== */

/* f32 -> bf16, round to nearest even; NaN stays a (quiet) NaN. */
uint16_t lukv_bf16_from_float(float x);
/* bf16 -> f32, exact. */
float lukv_bf16_to_float(uint16_t x);

#ifdef __cplusplus
}
#endif

#endif
