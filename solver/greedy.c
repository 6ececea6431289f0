/* Hull + global greedy (LU-KV): DESIGN §3 "Hull + greedy".
 *
 * Each head's curve is replaced by its lower convex hull on [g_min, G]. Along
 * one hull the loss decrease per grid unit only falls, so the globally
 * steepest next step is always the first untaken segment of some head: a
 * binary max-heap over heads, keyed by that segment's rate, merges the
 * per-head sorted lists. Budgets are processed in ascending order during one
 * sweep, which both costs a single pass for all ratios and makes the
 * allocations nested.
 *
 * Speed: heads are popped in effectively random order, so what one pop
 * touches must be one cache line, not a stride into the [n, G+1] curves.
 * The segments are therefore packed per head, each carrying its rate, end
 * point and end loss. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "solver.h"

typedef struct {
  double rate;  /* loss decrease per grid unit, > 0, strictly falling along a head */
  double y_end; /* loss at the segment's end point */
  int32_t g_end;
  int32_t len;  /* grid units */
} lukv_seg;

typedef struct {
  double rate; /* the head's next segment's rate, inline for the comparisons */
  int head;
} lukv_heap_item;

/* Steeper first; equal rates to the lower head so that results do not depend
 * on heap history. */
static inline int lukv_heap_before(lukv_heap_item a, lukv_heap_item b) {
  return a.rate > b.rate || (a.rate == b.rate && a.head < b.head);
}

static void lukv_heap_down(lukv_heap_item *hp, int size, int i) {
  lukv_heap_item x = hp[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= size) break;
    if (c + 1 < size && lukv_heap_before(hp[c + 1], hp[c])) c++;
    if (!lukv_heap_before(hp[c], x)) break;
    hp[i] = hp[c];
    i = c;
  }
  hp[i] = x;
}

/* The part of the lower hull the greedy can use: the lower hull of the
 * strict prefix minima of y on [g_lo, g_hi]. A point that is not a prefix
 * minimum is dominated (a smaller g is as good) and never a vertex of the
 * hull's decreasing part, so dropping it first changes nothing but saves
 * work on flat stretches. Same monotone chain as lukv_hull_lower, with the
 * vertices' coordinates cached as doubles. idx, hx, hy [g_hi - g_lo + 1]. Every segment of
 * the result strictly lowers the loss. */
static int lukv_hull_decreasing(const double *y, int g_lo, int g_hi, int *idx, double *hx, double *hy) {
  int k = 0;
  double run_min = INFINITY;
  for (int g = g_lo; g <= g_hi; g++) {
    const double yg = y[g], xg = (double)g;
    if (!(yg < run_min)) continue;
    run_min = yg;
    while (k >= 2) {
      double cross =
          (hx[k - 1] - hx[k - 2]) * (yg - hy[k - 2]) - (hy[k - 1] - hy[k - 2]) * (xg - hx[k - 2]);
      if (cross > 0.0) break;
      k--;
    }
    idx[k] = g;
    hx[k] = xg;
    hy[k] = yg;
    k++;
  }
  return k;
}

int lukv_greedy_solve(const lukv_curve_set *cs, int g_min, const int64_t *budgets, int n_budgets,
                      int32_t *alloc, lukv_alloc_info *info, lukv_error *err) {
  if (!cs || !cs->loss || !budgets || !alloc || !info || n_budgets < 0)
    return lukv_error_set(err, LUKV_ERR_INVALID, "greedy: NULL argument");
  const int n = lukv_curve_set_heads(cs), G = cs->grid;
  if (cs->n_layers <= 0 || cs->n_kv_heads <= 0 || G <= 0)
    return lukv_error_set(err, LUKV_ERR_INVALID, "greedy: empty curve set (L=%d, H=%d, G=%d)",
                          cs->n_layers, cs->n_kv_heads, G);
  if (g_min < 0 || g_min > G)
    return lukv_error_set(err, LUKV_ERR_RANGE, "greedy: g_min %d outside [0, %d]", g_min, G);
  for (int k = 1; k < n_budgets; k++)
    if (budgets[k] < budgets[k - 1])
      return lukv_error_set(err, LUKV_ERR_INVALID, "greedy: budgets not ascending at %d", k);
  if ((int64_t)n * G >= INT32_MAX)
    return lukv_error_set(err, LUKV_ERR_TOO_LARGE, "greedy: %d heads x G=%d segments overflow int", n,
                          G);
  const size_t S = (size_t)G + 1;

  size_t cap = (size_t)n * 8 + 16, nseg = 0;
  lukv_seg *seg = malloc(sizeof(lukv_seg) * cap);
  int *first = malloc(sizeof(int) * ((size_t)n + 1)); /* head h: seg[first[h] .. first[h+1]) */
  int *pos = malloc(sizeof(int) * (size_t)n);         /* absolute index of the next segment */
  lukv_heap_item *heap = malloc(sizeof(lukv_heap_item) * (size_t)n);
  int *idx = malloc(sizeof(int) * S);
  double *hy = malloc(sizeof(double) * S), *hx = malloc(sizeof(double) * S);
  int32_t *cur = malloc(sizeof(int32_t) * (size_t)n);
  double *cur_loss = malloc(sizeof(double) * (size_t)n); /* loss_h(cur[h]), contiguous */
  int rc = LUKV_OK;
  if (!seg || !first || !pos || !heap || !idx || !hx || !hy || !cur || !cur_loss) {
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "greedy: out of memory (%d heads, G=%d)", n, G);
    goto done;
  }

  int size = 0;
  for (int h = 0; h < n; h++) {
    const double *y = cs->loss + (size_t)h * S;
    int nv = lukv_hull_decreasing(y, g_min, G, idx, hx, hy);
    if (nseg + (size_t)nv > cap) {
      size_t nc = 2 * cap + (size_t)nv;
      lukv_seg *ns = realloc(seg, sizeof(lukv_seg) * nc);
      if (!ns) {
        rc = lukv_error_set(err, LUKV_ERR_NOMEM, "greedy: out of memory (%zu segments)", nc);
        goto done;
      }
      seg = ns, cap = nc;
    }
    first[h] = pos[h] = (int)nseg;
    for (int i = 0; i + 1 < nv; i++) {
      lukv_seg *sg = &seg[nseg++];
      sg->len = idx[i + 1] - idx[i];
      sg->rate = (hy[i] - hy[i + 1]) / (double)sg->len;
      sg->y_end = hy[i + 1];
      sg->g_end = idx[i + 1];
    }
    cur[h] = g_min;
    cur_loss[h] = y[g_min];
    if (nv > 1) heap[size++] = (lukv_heap_item){seg[first[h]].rate, h};
  }
  first[n] = (int)nseg;
  for (int i = size / 2 - 1; i >= 0; i--) lukv_heap_down(heap, size, i);

  const int64_t floor_units = (int64_t)n * g_min;
  int64_t used = floor_units;
  for (int k = 0; k < n_budgets; k++) {
    const int64_t B = budgets[k];
    int32_t *row = alloc + (size_t)k * n;
    lukv_alloc_info *in = &info[k];
    if (B < floor_units) {
      /* Infeasible: every head at the floor; there is no LP. */
      double l = 0.0;
      for (int h = 0; h < n; h++) {
        row[h] = g_min;
        l += cur_loss[h]; /* still at g_min: budgets ascend */
      }
      in->feasible = 0;
      in->used = floor_units;
      in->loss = in->loss_prefix = l;
      in->lp_bound = NAN;
      in->lambda = 0.0;
      continue;
    }
    while (size > 0) {
      const int h = heap[0].head;
      const lukv_seg *sg = &seg[pos[h]];
      if (used + sg->len > B) break;
      used += sg->len;
      cur[h] = sg->g_end;
      cur_loss[h] = sg->y_end;
      if (++pos[h] < first[h + 1]) {
        heap[0].rate = seg[pos[h]].rate;
      } else {
        heap[0] = heap[--size];
      }
      if (size > 0) lukv_heap_down(heap, size, 0);
    }
    memcpy(row, cur, sizeof(int32_t) * (size_t)n);
    int64_t used_k = used;
    double frac_part = 0.0, fill_loss = 0.0;
    int fill_head = -1;
    in->lambda = 0.0;
    if (size > 0) {
      /* First segment that does not fit: the LP takes the leftover fraction
       * of it; the integer allocation moves its head to the best real point
       * the leftover reaches. Widening [a, a + left] with B never moves the
       * argmin left (ties go to the smaller index), hence nesting. */
      const int h = heap[0].head;
      const lukv_seg *sg = &seg[pos[h]];
      const double *y = cs->loss + (size_t)h * S;
      const int a = cur[h];
      const int64_t left = B - used; /* 0 <= left < len */
      int best = a;
      for (int g = a + 1; g <= a + left; g++)
        if (y[g] < y[best]) best = g;
      row[h] = best;
      fill_head = h;
      fill_loss = y[best];
      used_k += best - a;
      frac_part = ((double)left / (double)sg->len) * (y[a] - sg->y_end);
      in->lambda = sg->rate;
    }
    /* Summed in head order from the curve values themselves, so that equal
     * allocations give bit-equal losses in every solver. */
    double prefix = 0.0, l = 0.0;
    for (int h = 0; h < n; h++) {
      prefix += cur_loss[h];
      l += h == fill_head ? fill_loss : cur_loss[h];
    }
    in->feasible = 1;
    in->used = used_k;
    in->loss = l;
    in->loss_prefix = prefix;
    in->lp_bound = prefix - frac_part;
  }

done:
  free(seg), free(first), free(pos), free(heap), free(idx), free(hx), free(hy), free(cur),
      free(cur_loss);
  return rc;
}
