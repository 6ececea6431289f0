/* The profiler's statistics core, CPU reference (DESIGN §3 "Method").
 *
 * Pure functions over one layer's tapped tensors: value norms, the oracle
 * (long-horizon) utility, the scorers the runtime can compute at compression
 * time, and the loss curves that land in profile.h5. These are the plain-C
 * twins the CUDA kernels are tested against, so they favour clarity and
 * determinism over speed (single thread, OpenBLAS for the q·k tiles only).
 *
 * Attention is never materialised: a probability is recomputed on the fly as
 * exp(scale·q·k − lse) from the row log-sum-exp the engine's forward pass
 * already produced, so memory stays O(T·(Hq + Hkv)) plus fixed tiles.
 *
 * Conventions
 *   - Every function returns LUKV_OK or a negative status (common/status.h)
 *     with a one-line message in err (err may be NULL). On error the output
 *     arrays hold unspecified values.
 *   - Output arrays are caller-owned; inputs are only read.
 *   - Shapes are row-major, last index fastest, as in HF / numpy.
 *   - Notation: T_ctx context tokens, F future tokens, T = T_ctx + F rows,
 *     Hq query heads, Hkv KV heads, group = Hq / Hkv, query head q belongs to
 *     KV head h(q) = q / group (HF repeat_kv), head dim d, hidden size D,
 *     sink s, window w, grid G.
 */
#ifndef LUKV_PROFILER_STATS_H
#define LUKV_PROFILER_STATS_H

#include <stdint.h>

#include "formats.h"
#include "status.h"

/* One layer's attention inputs for one sample: context then future, in one
 * full causal (no sliding window) forward pass. Borrowed pointers, f32, host. */
typedef struct lukv_layer_view {
  int T_ctx;          /* context tokens, >= 1 */
  int F;              /* future tokens (rows T_ctx .. T_ctx+F-1), >= 0; >= 1 for the utility */
  int n_heads;        /* Hq, a multiple of n_kv_heads */
  int n_kv_heads;     /* Hkv */
  int head_dim;       /* d */
  int hidden_size;    /* D (rows of o_proj) */
  float scale;        /* softmax scale of q·k, > 0 (Llama: 1/sqrt(d)) */
  const float *q;     /* [T, Hq, d]  post-RoPE queries */
  const float *k;     /* [T, Hkv, d] post-RoPE keys */
  const float *v;     /* [T, Hkv, d] values */
  const float *lse;   /* [Hq, T] natural-log log-sum-exp of scale·q_i·k_j over j <= i */
  const float *o_proj;/* [D, Hq*d] o_proj.weight as HF stores it: out = W_O · concat_q(attn_q) */
  /* Optional [Hq, d, d]: the Gram matrices M_q = W_Oqᵀ W_Oq of o_proj
   * (lukv_stats_gram; on the GPU lukv_stats_cuda_gram). They depend only on
   * the weights, so a profile run computes them once per layer and hands
   * them to every sample's view; NULL: vnorm computes them from o_proj on
   * every call (then o_proj and hidden_size are needed, otherwise not). */
  const float *o_gram;
} lukv_layer_view;

typedef enum lukv_utility_mode {
  LUKV_UTILITY_MAX = 0, /* max over future steps (default) */
  LUKV_UTILITY_SUM = 1  /* sum over future steps (KV Policy) */
} lukv_utility_mode;

typedef enum lukv_scorer_id {
  LUKV_SCORER_SNAPKV = 0,
  LUKV_SCORER_KEYDIFF = 1
} lukv_scorer_id;
#define LUKV_N_SCORERS 2

/* Name as stored under /curves ("snapkv", "keydiff"); NULL for an unknown id. */
const char *lukv_scorer_name(lukv_scorer_id id);
/* Inverse of lukv_scorer_name; LUKV_ERR_NOTFOUND for an unknown name. */
int lukv_scorer_parse(const char *name, lukv_scorer_id *out, lukv_error *err);
/* "max" / "sum" as in the profile's `utility` attribute; LUKV_ERR_INVALID otherwise. */
int lukv_utility_parse(const char *name, lukv_utility_mode *out, lukv_error *err);

typedef struct lukv_stats_params {
  int sink;          /* s >= 0 */
  int window;        /* w >= 0: always kept, and the SnapKV observation window */
  int pool_kernel;   /* >= 1 and odd: SnapKV max-pool kernel (1 = none) */
  int grid;          /* G >= 1 */
  lukv_utility_mode utility;
} lukv_stats_params;

/* ---- value norms ------------------------------------------------------------
 * vnorm[q, j] = ||W_O[:, q·d:(q+1)·d] · v[j, h(q)]||₂ for j < T_ctx, then
 * divided by Σ_{q,j} vnorm so the layer sums to 1 (all zeros stay zero).
 * vnorm: out [Hq, T_ctx]. Uses v, and o_gram if set, else o_proj. */
int lukv_stats_vnorm(const lukv_layer_view *x, float *vnorm, lukv_error *err);

/* gram: out [Hq, d, d], gram[q][a][b] = Σ_o W_O[o, q·d+a]·W_O[o, q·d+b] (f32
 * sgemm, what lukv_stats_vnorm computes when o_gram is NULL, so that setting
 * x->o_gram = gram gives the same value norms bit for bit). Uses o_proj. */
int lukv_stats_gram(const lukv_layer_view *x, float *gram, lukv_error *err);

/* ---- oracle utility ---------------------------------------------------------
 * A[q, k, j] = exp(scale·q_k·k_j − lse[q, k]) for future rows k in
 * [T_ctx, T_ctx+F) and context keys j < T_ctx;
 *   MAX: u[h, j] = max_{q∈h} max_k A[q,k,j]·vnorm[q,j]
 *   SUM: u[h, j] = max_{q∈h} Σ_k   A[q,k,j]·vnorm[q,j]
 * vnorm: [Hq, T_ctx] from lukv_stats_vnorm; u: out [Hkv, T_ctx].
 * Uses q, k, lse; F >= 1. */
int lukv_stats_utility(const lukv_layer_view *x, const float *vnorm, lukv_utility_mode mode,
                       float *u, lukv_error *err);

/* ---- scorers (highest = keep first) -----------------------------------------
 * snapkv: per query head, a_q[j] = Σ_{i∈[T_ctx−w, T_ctx), i>=j} A[q,i,j];
 * p_q = max-pool of a_q over j ∈ [0, T_ctx) with an odd kernel, same size
 * (positions outside the context do not take part); score[h, j] = mean over
 * the group of p_q[j]. w = 0 gives all zeros. Requires w <= T_ctx.
 * score: out [Hkv, T_ctx]. Uses q, k, lse. */
int lukv_score_snapkv(const lukv_layer_view *x, int window, int pool_kernel, float *score,
                      lukv_error *err);

/* keydiff: n_j = k_j / ||k_j|| (0 for a zero key), m = mean_{j<T_ctx} n_j,
 * score[h, j] = −(n_j · m) / ||m|| (0 when m = 0) = −cos(k_j, m).
 * score: out [Hkv, T_ctx]. Uses k. */
int lukv_score_keydiff(const lukv_layer_view *x, float *score, lukv_error *err);

/* Dispatch by id; window / pool_kernel are ignored by scorers that need none. */
int lukv_score(const lukv_layer_view *x, lukv_scorer_id id, int window, int pool_kernel,
               float *score, lukv_error *err);

/* ---- curves -----------------------------------------------------------------
 * Mid tokens are j ∈ [s, T_ctx − w): n_mid = T_ctx − s − w of them.
 * Keep count at grid index g (0 <= g <= G):
 *   m_g = clamp(round(g·T_ctx / G) − s − w, 0, n_mid), round half up,
 * computed in integers (exact). Returns m_g (0 on bad arguments). */
int lukv_keep_count(int g, int grid, int T_ctx, int sink, int window);

/* One head's loss curve. Sorts the mid tokens by score descending (ties: the
 * lower index first); loss(m) = Σ utility of the mid tokens not in the top m,
 * accumulated in double from the end of the ranking so that loss(n_mid) = 0
 * exactly and the curve is non-increasing. curve[g] = loss(m_g).
 * utility, score: [T_ctx] (score NULL: rank by the utility itself, the oracle);
 * curve: out [G+1]; total: out, Σ utility over mid tokens (may be NULL).
 * Requires T_ctx > s + w, no NaN in score, utility finite and >= 0. */
int lukv_stats_curve(const float *utility, const float *score, int T_ctx, int sink, int window,
                     int grid, float *curve, double *total, lukv_error *err);

/* ---- one layer of one sample, into profile-shaped arrays --------------------
 * Computes vnorm, utility, the requested scorers and every curve for layer
 * `layer` of sample `sample`, writing
 *   curves[i][sample, layer, :, :]   for scorer scorers[i]   ([S, L, Hkv, G+1] each)
 *   oracle[sample, layer, :, :]                              ([S, L, Hkv, G+1])
 *   utility_total[sample, layer, :]                          ([S, L, Hkv])
 * curves: [n_scorers] pointers; n_scorers may be 0 (oracle only).
 * The stored curves satisfy exactly, not just up to rounding, what
 * docs/formats.md promises: curve[0] == utility_total, non-increasing,
 * curve[G] == 0, oracle <= every scorer (see "rounding guards" in stats.c). */
int lukv_layer_stats(const lukv_layer_view *x, const lukv_stats_params *p, int n_scorers,
                     const lukv_scorer_id *scorers, int n_samples, int n_layers, int sample,
                     int layer, float *const *curves, float *oracle, float *utility_total,
                     lukv_error *err);

/* The same into a lukv_profile being filled (common/formats.h): takes sink,
 * window, pool_kernel, grid, utility, L, H and the scorer names from prof
 * (scorer names must be known ids), checks that the view agrees with
 * prof->model and that x->T_ctx == prof->sample_context_len[sample]. */
int lukv_profile_add_layer(lukv_profile *prof, int sample, int layer, const lukv_layer_view *x,
                           lukv_error *err);

#endif
