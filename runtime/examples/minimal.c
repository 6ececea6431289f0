/* The smallest complete use of liblukv, in the order an engine calls it:
 * open a budget table, create a cache, compress each layer after prefill,
 * then per decode step append and attend; finally report memory.
 *
 *   lukv-minimal BUDGETS.h5 [RATIO]      (RATIO: one of the table's, default 0.5)
 *
 * Random numbers stand in for the model: where this program fills a buffer
 * with noise, an engine passes its own prefill K / V, window queries and
 * decode q / k / v (bf16, layouts as in lukv.h). Only lukv.h is used.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lukv.h"

/* Deterministic noise in [-1, 1) as bf16. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static void fill_random(uint16_t *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    x[i] = lukv_bf16_from_float((float)((rng >> 40) / (double)(1u << 23)) * 2.0f - 1.0f);
  }
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s BUDGETS.h5 [RATIO]\n", argv[0]);
    return 2;
  }
  const double ratio = argc == 3 ? atof(argv[2]) : 0.5;
  int rc = 1;
  lukv_table *table = NULL;
  lukv_cache *cache = NULL;
  uint16_t *k = NULL, *v = NULL, *qw = NULL, *q = NULL, *out = NULL, *kn = NULL, *vn = NULL;

  /* 1. The table. Errors are one line: status text plus what went wrong. */
  if (lukv_table_open(argv[1], &table) != LUKV_OK) {
    fprintf(stderr, "lukv-minimal: %s\n", lukv_table_errmsg(NULL));
    return 1;
  }
  lukv_table_info ti;
  lukv_table_get_info(table, &ti);
  printf("table: model %s, %d layers x %d KV heads, scorer %s, sink %d, window %d, %d ratios\n",
         ti.model_name, ti.n_layers, ti.n_kv_heads, ti.scorer, ti.sink, ti.window, ti.n_ratios);

  /* 2. The cache. An engine fills the shape from its model config and lets
   * lukv_cache_check_table refuse a table made for another model; this
   * example has no model, so it borrows the table's shape. */
  enum { B = 2, T_MAX = 384, RESERVE = 16, STEPS = 4 };
  const int32_t context_len[B] = {T_MAX, 200}; /* sequences of different lengths */
  lukv_cache_config cfg;
  lukv_cache_config_init(&cfg);
  cfg.n_layers = ti.n_layers;
  cfg.n_kv_heads = ti.n_kv_heads;
  cfg.n_q_heads = ti.n_q_heads;
  cfg.head_dim = ti.head_dim;
  cfg.batch = B;
  cfg.max_context = T_MAX;
  cfg.decode_reserve = RESERVE;
  cfg.backend = LUKV_BACKEND_CPU;
  if (lukv_cache_create(&cfg, &cache) != LUKV_OK) {
    fprintf(stderr, "lukv-minimal: %s\n", lukv_cache_errmsg(NULL));
    goto done;
  }
  if (lukv_cache_check_table(cache, table) != LUKV_OK) {
    fprintf(stderr, "lukv-minimal: %s\n", lukv_cache_errmsg(cache));
    goto done;
  }

  const int L = cfg.n_layers, Hkv = cfg.n_kv_heads, Hq = cfg.n_q_heads, d = cfg.head_dim;
  const int w = ti.window;
  const size_t n_kv = (size_t)B * Hkv * T_MAX * d; /* [B, Hkv, T_max, d] */
  k = malloc(n_kv * sizeof *k);
  v = malloc(n_kv * sizeof *v);
  qw = malloc(((size_t)B * Hq * w * d + 1) * sizeof *qw); /* [B, Hq, w, d] */
  q = malloc((size_t)B * Hq * d * sizeof *q);            /* [B, Hq, d] */
  out = malloc((size_t)B * Hq * d * sizeof *out);        /* [B, Hq, d] */
  kn = malloc((size_t)B * Hkv * d * sizeof *kn);         /* [B, Hkv, d] */
  vn = malloc((size_t)B * Hkv * d * sizeof *vn);
  if (!k || !v || !qw || !q || !out || !kn || !vn) {
    fprintf(stderr, "lukv-minimal: out of memory\n");
    goto done;
  }

  /* 3. Prefill: after each layer's attention, hand its K, V and the last w
   * queries to lukv_compress. The engine may free its own prefill K / V of
   * that layer right after: the cache keeps copies of the kept rows. */
  for (int l = 0; l < L; l++) {
    fill_random(k, n_kv);
    fill_random(v, n_kv);
    fill_random(qw, (size_t)B * Hq * w * d);
    lukv_compress_args a;
    lukv_compress_args_init(&a); /* scorer, sink, window: the table's */
    a.layer = l;
    a.k = k;
    a.v = v;
    a.q_window = qw;
    a.t_max = T_MAX;
    a.context_len = context_len;
    a.policy = LUKV_KEEP_TABLE;
    a.table = table;
    a.ratio = ratio;
    if (lukv_compress(cache, &a) != LUKV_OK) {
      fprintf(stderr, "lukv-minimal: %s\n", lukv_cache_errmsg(cache));
      goto done;
    }
  }
  lukv_segment sg;
  lukv_cache_segment(cache, 0, 0, 0, &sg);
  printf("layer 0, seq 0, head 0: kept %d of %d tokens\n", sg.keep, sg.context_len);

  /* 4. Decode: per step and layer, append this token's k / v, then attend. */
  for (int step = 0; step < STEPS; step++) {
    for (int l = 0; l < L; l++) {
      fill_random(kn, (size_t)B * Hkv * d);
      fill_random(vn, (size_t)B * Hkv * d);
      fill_random(q, (size_t)B * Hq * d);
      if (lukv_append(cache, l, kn, vn) != LUKV_OK ||
          lukv_decode_attention(cache, l, q, out, 0.0f /* 1/sqrt(d) */) != LUKV_OK) {
        fprintf(stderr, "lukv-minimal: %s\n", lukv_cache_errmsg(cache));
        goto done;
      }
    }
  }
  printf("decoded %d tokens; out[0] = %.4f\n", STEPS, (double)lukv_bf16_to_float(out[0]));

  /* 5. Memory: what the compressed cache holds vs a full one. */
  uint64_t held, full;
  lukv_cache_memory(cache, &held, &full);
  printf("ratio %.2f: bytes held %llu vs full %llu (%.1f%%)\n", ratio, (unsigned long long)held,
         (unsigned long long)full, full ? 100.0 * (double)held / (double)full : 0.0);
  rc = 0;
done:
  free(k), free(v), free(qw), free(q), free(out), free(kn), free(vn);
  lukv_cache_destroy(cache);
  lukv_table_close(table);
  return rc;
}
