#include "pyramid.h"

#include <math.h>
#include <stdlib.h>

typedef struct frac_item {
  double frac;
  int idx;
} frac_item;

/* Largest fraction first; ties to the lower index. */
static int frac_cmp(const void *a, const void *b) {
  const frac_item *x = a, *y = b;
  if (x->frac != y->frac) return x->frac > y->frac ? -1 : 1;
  return (x->idx > y->idx) - (x->idx < y->idx);
}

int lukv_round_largest_remainder(const double *x, int n, int64_t extra, int64_t hi, int fill_rest,
                                 int32_t *keep) {
  if (!x || !keep || n < 1) return LUKV_ERR_INVALID;
  if (extra <= 0) {
    for (int i = 0; i < n; i++) keep[i] = (int32_t)floor(x[i]);
    return LUKV_OK;
  }
  frac_item *order = malloc(sizeof *order * (size_t)n);
  if (!order) return LUKV_ERR_NOMEM;
  for (int i = 0; i < n; i++) {
    double f = floor(x[i]);
    keep[i] = (int32_t)f;
    order[i].frac = x[i] - f;
    order[i].idx = i;
  }
  qsort(order, (size_t)n, sizeof *order, frac_cmp);
  for (int i = 0; i < n && extra > 0; i++) {
    if (!(order[i].frac > 0.0)) break;
    if (keep[order[i].idx] < hi) keep[order[i].idx]++, extra--;
  }
  if (fill_rest)
    for (int i = 0; i < n && extra > 0; i++)
      if (keep[i] < hi) keep[i]++, extra--;
  free(order);
  return LUKV_OK;
}

/* sum_l H * clamp(t_l + delta, lo, hi): continuous and non-decreasing in delta. */
static double clamped_total(const double *t, int L, int H, double lo, double hi, double delta) {
  double s = 0.0;
  for (int l = 0; l < L; l++) {
    double v = t[l] + delta;
    s += (v < lo ? lo : (v > hi ? hi : v)) * H;
  }
  return s;
}

int lukv_pyramid_schedule(int L, int H, int64_t lo, int64_t hi, int64_t total, double beta,
                          int fill_rest, int32_t *out) {
  if (!out || L < 1 || H < 1 || lo < 0 || lo > hi || hi > INT32_MAX || !(beta > 0.0) ||
      !isfinite(beta))
    return LUKV_ERR_INVALID;
  const int n = L * H;
  if (total <= (int64_t)n * lo || total >= (int64_t)n * hi) {
    int32_t v = (int32_t)(total <= (int64_t)n * lo ? lo : hi);
    for (int i = 0; i < n; i++) out[i] = v;
    return LUKV_OK;
  }
  double *t = malloc(sizeof *t * (size_t)L);
  double *x = malloc(sizeof *x * (size_t)n);
  if (!t || !x) {
    free(t), free(x);
    return LUKV_ERR_NOMEM;
  }
  const double avg = (double)total / n;
  for (int l = 0; l < L; l++)
    t[l] = L == 1 ? avg : avg * (2.0 - 1.0 / beta) - avg * (2.0 - 2.0 / beta) * l / (L - 1);
  double tmin = t[0], tmax = t[0];
  for (int l = 1; l < L; l++) {
    if (t[l] < tmin) tmin = t[l];
    if (t[l] > tmax) tmax = t[l];
  }
  /* clamped_total(dlo) <= total < clamped_total(dhi) throughout: at
   * dlo = lo - tmax every layer sits at lo (n lo < total). */
  const double flo = (double)lo, fhi = (double)hi;
  double dlo = flo - tmax, dhi = fhi - tmin;
  if (clamped_total(t, L, H, flo, fhi, 0.0) <= (double)total) dlo = 0.0;
  for (int it = 0; it < 200 && dhi - dlo > 1e-12 * (1.0 + fabs(dlo)); it++) {
    double mid = 0.5 * (dlo + dhi);
    if (clamped_total(t, L, H, flo, fhi, mid) <= (double)total)
      dlo = mid;
    else
      dhi = mid;
  }
  int64_t floors = 0;
  for (int i = 0; i < n; i++) {
    double v = t[i / H] + dlo;
    x[i] = v < flo ? flo : (v > fhi ? fhi : v);
    floors += (int64_t)floor(x[i]);
  }
  int rc = lukv_round_largest_remainder(x, n, total - floors, hi, fill_rest, out);
  free(t), free(x);
  return rc;
}
