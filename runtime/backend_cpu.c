/* CPU backend: the plain-C twin of every runtime kernel (rt_backend.h).
 *
 * Host memory, one thread, bf16 storage with f32 arithmetic (f64 for the
 * snapkv attention sums, as the profiler computes them, so that the runtime
 * ranks tokens exactly as the table was calibrated). Written to be read and
 * to be compared against: each entry is what a CUDA kernel must reproduce
 * within |gpu - ref| <= atol + eps |ref| (bit for bit for select, gather and
 * append).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "keydiff.h"
#include "rt_alloc.h"
#include "rt_backend.h"
#include "rt_bf16.h"

static int cpu_alloc(void *ctx, size_t bytes, void **ptr, lukv_error *err) {
  (void)ctx;
  *ptr = malloc(bytes ? bytes : 1);
  if (!*ptr)
    return lukv_error_set(err, LUKV_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
  return LUKV_OK;
}

static void cpu_free(void *ctx, void *ptr) {
  (void)ctx;
  free(ptr);
}

static int cpu_to_host(void *ctx, void *dst, const void *src, size_t bytes, lukv_error *err) {
  (void)ctx, (void)err;
  if (bytes) memcpy(dst, src, bytes);
  return LUKV_OK;
}

/* n bf16 values -> f32. */
static void load_row(const uint16_t *src, int n, float *dst) {
  for (int c = 0; c < n; c++) dst[c] = lukv_rt_bf16_to_f32(src[c]);
}

static float dot(const float *a, const float *b, int n) {
  float s = 0.0f;
  for (int c = 0; c < n; c++) s += a[c] * b[c];
  return s;
}

/* snapkv for one (sequence, KV head):
 *   kf   [T, d] the head's keys in f32
 *   qwin [group, w, d] bf16: the group's window queries (row i at position T - w + i)
 *   out  [T] scores
 * Scratch: lg, a, acc [T] f64, qf [d]. */
static void snapkv_head(const float *kf, const uint16_t *qwin, int T, int d, int group, int w,
                        int pool_kernel, float scale, double *lg, double *a, double *acc,
                        float *qf, float *out) {
  const int radius = pool_kernel / 2;
  for (int j = 0; j < T; j++) acc[j] = 0.0;
  for (int q = 0; q < group; q++) {
    for (int j = 0; j < T; j++) a[j] = 0.0;
    for (int i = 0; i < w; i++) {
      const int p = T - w + i; /* the query's position; it sees keys 0..p */
      if (p < 0) continue;
      load_row(qwin + ((size_t)q * w + i) * d, d, qf);
      double m = -INFINITY, den = 0.0;
      for (int j = 0; j <= p; j++) {
        lg[j] = (double)scale * dot(qf, kf + (size_t)j * d, d);
        if (lg[j] > m) m = lg[j];
      }
      for (int j = 0; j <= p; j++) den += (lg[j] = exp(lg[j] - m));
      for (int j = 0; j <= p; j++) a[j] += lg[j] / den;
    }
    /* Pool per query head, then average the group: each head keeps its own
     * neighbourhoods (the profiler's order; max and mean do not commute). */
    for (int j = 0; j < T; j++) {
      int lo = j - radius < 0 ? 0 : j - radius, hi = j + radius > T - 1 ? T - 1 : j + radius;
      double m = a[lo];
      for (int t = lo + 1; t <= hi; t++)
        if (a[t] > m) m = a[t];
      acc[j] += m;
    }
  }
  for (int j = 0; j < T; j++) out[j] = (float)(acc[j] / group);
}

/* Longest prompt of the batch: scratch is sized by it, not by the stride. */
static int max_len(const int32_t *context_len, int B) {
  int m = 1;
  for (int b = 0; b < B; b++)
    if (context_len[b] > m) m = context_len[b];
  return m;
}

static int cpu_score(void *ctx, const lukv_rt_score_job *job, float *scores, lukv_error *err) {
  (void)ctx;
  const int B = job->dims.B, Hkv = job->dims.Hkv, Hq = job->dims.Hq, d = job->dims.d;
  const int group = Hq / Hkv, tm = job->t_max, w = job->window;
  const int Tm = max_len(job->context_len, B);
  const uint16_t *K = job->k, *Q = job->q_window;
  float *kf = malloc(sizeof *kf * (size_t)Tm * d); /* [T, d] one head */
  float *qf = malloc(sizeof *qf * (size_t)d);
  double *lg = malloc(sizeof *lg * (size_t)Tm);
  double *a = malloc(sizeof *a * (size_t)Tm);
  double *acc = malloc(sizeof *acc * (size_t)(Tm > d ? Tm : d)); /* also keydiff's mean [d] */
  if (!kf || !qf || !lg || !a || !acc) {
    free(kf), free(qf), free(lg), free(a), free(acc);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "cpu backend: score scratch for T %d", Tm);
  }
  for (int b = 0; b < B; b++) {
    const int T = job->context_len[b];
    for (int h = 0; h < Hkv; h++) {
      float *out = scores + ((size_t)b * Hkv + h) * tm;
      for (int t = T; t < tm; t++) out[t] = -INFINITY;
      for (int t = 0; t < T; t++)
        load_row(K + (((size_t)b * Hkv + h) * tm + t) * d, d, kf + (size_t)t * d);
      if (job->scorer == LUKV_RT_KEYDIFF) {
        lukv_keydiff_head(kf, T, (size_t)d, d, acc, out); /* common/keydiff.h */
      } else if (w == 0) {
        for (int t = 0; t < T; t++) out[t] = 0.0f; /* no window, no evidence */
      } else {
        const uint16_t *qwin = Q + ((size_t)b * Hq + (size_t)h * group) * w * d;
        snapkv_head(kf, qwin, T, d, group, w, job->pool_kernel, job->scale, lg, a, acc, qf,
                    out);
      }
    }
  }
  free(kf), free(qf), free(lg), free(a), free(acc);
  return LUKV_OK;
}

typedef struct ranked {
  float key;
  int pos;
} ranked;

static int ranked_cmp(const void *x, const void *y) {
  const ranked *a = x, *b = y;
  if (a->key != b->key) return a->key > b->key ? -1 : 1;
  return (a->pos > b->pos) - (a->pos < b->pos);
}

static int cpu_select(void *ctx, const lukv_rt_select_job *job, lukv_error *err) {
  (void)ctx;
  const int B = job->dims.B, Hkv = job->dims.Hkv, tm = job->t_max;
  const int s = job->sink, w = job->window, Tm = max_len(job->context_len, B);
  ranked *mid = malloc(sizeof *mid * (size_t)Tm);
  unsigned char *kept = malloc((size_t)Tm);
  if (!mid || !kept) {
    free(mid), free(kept);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "cpu backend: select scratch for T %d", Tm);
  }
  for (int b = 0; b < B; b++) {
    const int T = job->context_len[b];
    for (int h = 0; h < Hkv; h++) {
      const lukv_segment *sg = &job->layer->seg[b * Hkv + h];
      int32_t *pos = job->layer->pos + sg->offset;
      if (sg->keep >= T) { /* nothing evicted */
        for (int t = 0; t < T; t++) pos[t] = t;
        continue;
      }
      /* Here s + w <= keep < T: sink, mid and window are disjoint. */
      const int n = T - s - w, m = sg->keep - s - w;
      const float *sc = job->scores + ((size_t)b * Hkv + h) * tm;
      memset(kept, 0, (size_t)T);
      for (int t = 0; t < s; t++) kept[t] = 1;
      for (int t = T - w; t < T; t++) kept[t] = 1;
      for (int j = 0; j < n; j++) mid[j].key = lukv_rt_score_key(sc[s + j]), mid[j].pos = s + j;
      qsort(mid, (size_t)n, sizeof *mid, ranked_cmp);
      for (int j = 0; j < m; j++) kept[mid[j].pos] = 1;
      int r = 0;
      for (int t = 0; t < T; t++) /* ascending: original token order */
        if (kept[t]) pos[r++] = t;
    }
  }
  free(mid), free(kept);
  return LUKV_OK;
}

static int cpu_gather(void *ctx, const lukv_rt_dims *dims, const lukv_rt_layer *layer,
                      const void *k_src, const void *v_src, int t_max, lukv_error *err) {
  (void)ctx, (void)err;
  const int Hkv = dims->Hkv, d = dims->d;
  const size_t row = sizeof(uint16_t) * (size_t)d;
  const uint16_t *K = k_src, *V = v_src;
  uint16_t *Kd = layer->k, *Vd = layer->v;
  for (int sgi = 0; sgi < dims->B * Hkv; sgi++) {
    const lukv_segment *sg = &layer->seg[sgi];
    /* sgi = b*Hkv + h, and the source's [B, Hkv] prefix is laid out the same. */
    const size_t src0 = (size_t)sgi * t_max;
    for (int i = 0; i < sg->keep; i++) {
      const size_t src = (src0 + (size_t)layer->pos[sg->offset + i]) * d;
      const size_t dst = (size_t)(sg->offset + i) * d;
      memcpy(Kd + dst, K + src, row);
      memcpy(Vd + dst, V + src, row);
    }
  }
  return LUKV_OK;
}

static int cpu_append(void *ctx, const lukv_rt_dims *dims, const lukv_rt_layer *layer,
                      const void *k_new, const void *v_new, lukv_error *err) {
  (void)ctx, (void)err;
  const int d = dims->d;
  const size_t row = sizeof(uint16_t) * (size_t)d;
  const uint16_t *K = k_new, *V = v_new; /* [B, Hkv, d]: row sgi is segment sgi's */
  uint16_t *Kd = layer->k, *Vd = layer->v;
  for (int sgi = 0; sgi < dims->B * dims->Hkv; sgi++) {
    const lukv_segment *sg = &layer->seg[sgi];
    const size_t dst = (size_t)(sg->offset + sg->length) * d;
    memcpy(Kd + dst, K + (size_t)sgi * d, row);
    memcpy(Vd + dst, V + (size_t)sgi * d, row);
  }
  return LUKV_OK;
}

static int cpu_decode(void *ctx, const lukv_rt_dims *dims, const lukv_rt_layer *layer,
                      const void *q, void *out, float scale, lukv_error *err) {
  (void)ctx;
  const int B = dims->B, Hkv = dims->Hkv, Hq = dims->Hq, d = dims->d, group = Hq / Hkv;
  int max_len = 1;
  for (int i = 0; i < B * Hkv; i++)
    if (layer->seg[i].length > max_len) max_len = layer->seg[i].length;
  float *qf = malloc(sizeof *qf * (size_t)d);       /* [d] */
  float *kv = malloc(sizeof *kv * (size_t)d);       /* [d] one K or V row */
  float *acc = malloc(sizeof *acc * (size_t)d);     /* [d] */
  float *p = malloc(sizeof *p * (size_t)max_len);   /* [length] logits, then weights */
  if (!qf || !kv || !acc || !p) {
    free(qf), free(kv), free(acc), free(p);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "cpu backend: decode scratch");
  }
  const uint16_t *Q = q, *Kd = layer->k, *Vd = layer->v;
  uint16_t *O = out;
  for (int b = 0; b < B; b++) {
    for (int qh = 0; qh < Hq; qh++) {
      const lukv_segment *sg = &layer->seg[b * Hkv + qh / group];
      const size_t qo = ((size_t)b * Hq + qh) * d;
      load_row(Q + qo, d, qf);
      for (int c = 0; c < d; c++) acc[c] = 0.0f;
      float m = -INFINITY, den = 0.0f;
      for (int i = 0; i < sg->length; i++) {
        load_row(Kd + (size_t)(sg->offset + i) * d, d, kv);
        p[i] = scale * dot(qf, kv, d);
        if (p[i] > m) m = p[i];
      }
      for (int i = 0; i < sg->length; i++) {
        p[i] = expf(p[i] - m);
        den += p[i];
        load_row(Vd + (size_t)(sg->offset + i) * d, d, kv);
        for (int c = 0; c < d; c++) acc[c] += p[i] * kv[c];
      }
      /* An empty segment attends to nothing: zeros, not 0/0. */
      const float inv = sg->length > 0 ? 1.0f / den : 0.0f;
      for (int c = 0; c < d; c++) O[qo + c] = lukv_rt_f32_to_bf16(acc[c] * inv);
    }
  }
  free(qf), free(kv), free(acc), free(p);
  return LUKV_OK;
}

const lukv_rt_backend lukv_rt_backend_cpu = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_host = cpu_to_host,
    .score = cpu_score,
    .select = cpu_select,
    .gather = cpu_gather,
    .append = cpu_append,
    .decode = cpu_decode,
};
