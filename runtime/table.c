/* Budget tables: budgets.h5 in memory, and the runtime rule (lukv.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_internal.h"

/* Text of this thread's last failed lukv_table_open: there is no handle to
 * hold it, and a global would race between threads opening tables. */
static _Thread_local char open_msg[LUKV_RT_MSG];

int lukv_rt_keep_msg(char *dst, int status, const lukv_error *err) {
  if (status != LUKV_OK)
    snprintf(dst, LUKV_RT_MSG, "%s",
             err && err->status != LUKV_OK && err->msg[0] ? err->msg : lukv_strerror(status));
  return status;
}

int lukv_table_open(const char *path, lukv_table **out) {
  lukv_error e;
  lukv_error_clear(&e);
  if (out) *out = NULL;
  if (!path || !out) {
    lukv_error_set(&e, LUKV_ERR_INVALID, "lukv_table_open: %s is NULL", !path ? "path" : "out");
    return lukv_rt_keep_msg(open_msg, e.status, &e);
  }
  lukv_table *t = calloc(1, sizeof *t);
  if (!t) {
    lukv_error_set(&e, LUKV_ERR_NOMEM, "%s: out of memory", path);
    return lukv_rt_keep_msg(open_msg, e.status, &e);
  }
  int rc = lukv_budgets_read(path, &t->b, &e);
  if (rc == LUKV_OK && t->b.n_ratios > INT32_MAX)
    rc = lukv_error_set(&e, LUKV_ERR_TOO_LARGE, "%s: /compression: %lld ratios", path,
                        (long long)t->b.n_ratios);
  if (rc != LUKV_OK) {
    lukv_budgets_free(&t->b);
    free(t);
    return lukv_rt_keep_msg(open_msg, rc, &e);
  }
  *out = t;
  return LUKV_OK;
}

void lukv_table_close(lukv_table *table) {
  if (!table) return;
  lukv_budgets_free(&table->b);
  free(table);
}

const char *lukv_table_errmsg(const lukv_table *table) { return table ? table->msg : open_msg; }

int lukv_table_shape(lukv_table *table, int *n_layers, int *n_kv_heads) {
  if (!table) return LUKV_ERR_INVALID;
  if (!n_layers || !n_kv_heads) {
    lukv_error e = {LUKV_OK, ""};
    lukv_error_set(&e, LUKV_ERR_INVALID, "lukv_table_shape: %s is NULL",
                   !n_layers ? "n_layers" : "n_kv_heads");
    return lukv_rt_keep_msg(table->msg, e.status, &e);
  }
  *n_layers = table->b.model.n_layers;
  *n_kv_heads = table->b.model.n_kv_heads;
  return LUKV_OK;
}

int lukv_table_get_info(lukv_table *table, lukv_table_info *out) {
  if (!table) return LUKV_ERR_INVALID;
  if (!out) {
    lukv_error e = {LUKV_OK, ""};
    lukv_error_set(&e, LUKV_ERR_INVALID, "lukv_table_get_info: out is NULL");
    return lukv_rt_keep_msg(table->msg, e.status, &e);
  }
  const lukv_budgets *b = &table->b;
  out->model_name = b->model.model_name;
  out->model_hash = b->model.model_hash;
  out->scorer = b->scorer;
  out->n_layers = b->model.n_layers;
  out->n_kv_heads = b->model.n_kv_heads;
  out->n_q_heads = b->model.n_q_heads;
  out->head_dim = b->model.head_dim;
  out->sink = b->sink;
  out->window = b->window;
  out->n_ratios = (int)b->n_ratios;
  out->ratios = b->compression;
  return LUKV_OK;
}

int lukv_rt_table_find(const lukv_table *t, double ratio, int64_t *row, lukv_error *err) {
  if (isnan(ratio))
    return lukv_error_set(err, LUKV_ERR_INVALID, "ratio is NaN");
  int64_t r = lukv_budgets_find_ratio(&t->b, ratio);
  if (r < 0)
    return lukv_error_set(err, LUKV_ERR_NOTFOUND,
                          "ratio %g is not in the table (%lld ratios from %g to %g)", ratio,
                          (long long)t->b.n_ratios, (double)t->b.compression[0],
                          (double)t->b.compression[t->b.n_ratios - 1]);
  *row = r;
  return LUKV_OK;
}

const float *lukv_rt_table_layer(const lukv_table *t, int64_t row, int layer) {
  const int64_t L = t->b.model.n_layers, H = t->b.model.n_kv_heads;
  return t->b.keep_fraction + (row * L + layer) * H;
}

int lukv_rt_table_keep(const lukv_table *t, double ratio, int T, int32_t *keep, lukv_error *err) {
  if (!keep) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_table_keep: keep_out is NULL");
  if (T < 1)
    return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_table_keep: context length %d < 1", T);
  int64_t r;
  int rc = lukv_rt_table_find(t, ratio, &r, err);
  if (rc != LUKV_OK) return rc;
  const int L = t->b.model.n_layers, H = t->b.model.n_kv_heads;
  for (int l = 0; l < L; l++) {
    rc = lukv_rt_keep_table(lukv_rt_table_layer(t, r, l), H, T, t->b.sink, t->b.window,
                            keep + (size_t)l * H);
    if (rc != LUKV_OK) return lukv_error_set(err, rc, "lukv_table_keep: %s", lukv_strerror(rc));
  }
  return LUKV_OK;
}

int lukv_table_keep(lukv_table *table, double ratio, int context_len, int32_t *keep_out) {
  if (!table) return LUKV_ERR_INVALID;
  lukv_error e;
  lukv_error_clear(&e);
  int rc = lukv_rt_table_keep(table, ratio, context_len, keep_out, &e);
  return lukv_rt_keep_msg(table->msg, rc, &e);
}
