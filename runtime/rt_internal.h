/* What table.c and cache.c share (internal to runtime/). */
#ifndef LUKV_RT_INTERNAL_H
#define LUKV_RT_INTERNAL_H

#include <stdint.h>

#include "formats.h"
#include "lukv.h"
#include "status.h"

#define LUKV_RT_MSG 1024

struct lukv_table {
  lukv_budgets b;         /* owned; validated by lukv_budgets_read */
  char msg[LUKV_RT_MSG];  /* last failure, "" if none */
};

/* Row of `ratio` in the table; LUKV_ERR_NOTFOUND (with the table's range in
 * the message) if absent. */
int lukv_rt_table_find(const lukv_table *t, double ratio, int64_t *row, lukv_error *err);

/* keep_fraction[row, layer, :] — [Hkv]. */
const float *lukv_rt_table_layer(const lukv_table *t, int64_t row, int layer);

/* lukv_table_keep's work, reporting into err instead of the table, so that a
 * cache can use a table it only reads. keep: out [L * Hkv]. */
int lukv_rt_table_keep(const lukv_table *t, double ratio, int T, int32_t *keep, lukv_error *err);

/* Copies a message into a handle's (or the thread's) buffer; `status` is
 * returned so call sites read `return lukv_rt_keep_msg(...)`. */
int lukv_rt_keep_msg(char *dst, int status, const lukv_error *err);

#endif
