#include "cpu_ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void lukv_cpu_embed(const float *table, const int32_t *tok, int T, int D, float *x) {
  for (int t = 0; t < T; t++) memcpy(x + (size_t)t * D, table + (size_t)tok[t] * D, (size_t)D * sizeof *x);
}

void lukv_cpu_rmsnorm(const float *x, const float *w, int T, int D, float eps, float *out) {
  for (int t = 0; t < T; t++) {
    const float *xr = x + (size_t)t * D;
    float *o = out + (size_t)t * D;
    double ss = 0; /* double: D terms of one sign, summed in any order */
    for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
    float r = (float)(1.0 / sqrt(ss / D + eps));
    for (int i = 0; i < D; i++) o[i] = w[i] * (xr[i] * r);
  }
}

void lukv_cpu_linear(const float *x, const float *W, const float *b, int T, int in, int out,
                     int accumulate, float *y) {
  /* y [T, out] = x [T, in] . W [out, in]^T */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, x, in, W, in,
              accumulate ? 1.0f : 0.0f, y, out);
  if (b)
    for (int t = 0; t < T; t++)
      for (int o = 0; o < out; o++) y[(size_t)t * out + o] += b[o];
}

void lukv_cpu_rope(float *x, int T, int H, int d, int pos0, const float *inv_freq) {
  int half = d / 2;
  for (int t = 0; t < T; t++) {
    float pos = (float)(pos0 + t);
    for (int i = 0; i < half; i++) {
      float ang = pos * inv_freq[i]; /* f32 product, as in transformers */
      float c = (float)cos((double)ang), s = (float)sin((double)ang);
      for (int h = 0; h < H; h++) {
        float *xr = x + ((size_t)t * H + h) * d;
        float x1 = xr[i], x2 = xr[i + half];
        xr[i] = x1 * c - x2 * s;
        xr[i + half] = x2 * c + x1 * s;
      }
    }
  }
}

void lukv_cpu_swiglu(float *gate, const float *up, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

/* Keys visible to the query at absolute position p: [lo, p]. */
static inline int key_lo(int p, int window) { return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0; }

enum { BQ = 64, BK = 128 };

int lukv_cpu_attention(const float *q, const float *k, const float *v, const lukv_attn_shape *s,
                       float *out, float *lse) {
  const int T = s->T, Hq = s->n_heads, Hkv = s->n_kv_heads, d = s->head_dim;
  const int group = Hq / Hkv, pos0 = s->S - s->T;
  const int qs = Hq * d, ks = Hkv * d; /* row strides of q/out and k/v */
  const float scale = 1.0f / sqrtf((float)d);
  /* Per block of BQ queries: scores [BQ, BK], accumulator [BQ, d], and the
   * running max m and sum l of each row. */
  float *sc = malloc(sizeof(float) * ((size_t)BQ * BK + (size_t)BQ * d + 2 * BQ));
  if (!sc) return -1;
  float *acc = sc + (size_t)BQ * BK, *m = acc + (size_t)BQ * d, *l = m + BQ;
  for (int h = 0; h < Hq; h++) {
    const float *kh = k + (size_t)(h / group) * d, *vh = v + (size_t)(h / group) * d;
    for (int i0 = 0; i0 < T; i0 += BQ) {
      int nq = T - i0 < BQ ? T - i0 : BQ;
      const float *qb = q + (size_t)i0 * qs + (size_t)h * d;
      memset(acc, 0, sizeof(float) * (size_t)nq * d);
      for (int r = 0; r < nq; r++) m[r] = -INFINITY, l[r] = 0.0f;
      int lo = key_lo(pos0 + i0, s->window), hi = pos0 + i0 + nq; /* keys any row of the block sees */
      for (int j0 = lo - lo % BK; j0 < hi; j0 += BK) {
        int nk = hi - j0 < BK ? hi - j0 : BK;
        /* sc [nq, nk] = scale * q_blk [nq, d] . k_blk [nk, d]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, scale, qb, qs,
                    kh + (size_t)j0 * ks, ks, 0.0f, sc, nk);
        for (int r = 0; r < nq; r++) {
          int p = pos0 + i0 + r;
          int a = key_lo(p, s->window) - j0, b = p + 1 - j0; /* visible columns [a, b) */
          if (a < 0) a = 0;
          if (b > nk) b = nk;
          float *sr = sc + (size_t)r * nk;
          if (a >= b) { /* row sees nothing in this block */
            memset(sr, 0, sizeof(float) * (size_t)nk);
            continue;
          }
          float mx = m[r];
          for (int j = a; j < b; j++) mx = sr[j] > mx ? sr[j] : mx;
          float alpha = expf(m[r] - mx), sum = 0.0f; /* m[r] = -inf -> alpha 0 */
          for (int j = 0; j < nk; j++) {
            float e = j >= a && j < b ? expf(sr[j] - mx) : 0.0f;
            sr[j] = e;
            sum += e;
          }
          l[r] = l[r] * alpha + sum;
          m[r] = mx;
          if (alpha != 1.0f)
            for (int c = 0; c < d; c++) acc[(size_t)r * d + c] *= alpha;
        }
        /* acc [nq, d] += P [nq, nk] . v_blk [nk, d] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, d, nk, 1.0f, sc, nk,
                    vh + (size_t)j0 * ks, ks, 1.0f, acc, d);
      }
      for (int r = 0; r < nq; r++) {
        float *o = out + (size_t)(i0 + r) * qs + (size_t)h * d, inv = 1.0f / l[r];
        for (int c = 0; c < d; c++) o[c] = acc[(size_t)r * d + c] * inv;
        lse[(size_t)h * T + i0 + r] = m[r] + logf(l[r]);
      }
    }
  }
  free(sc);
  return 0;
}

int lukv_cpu_attention_naive(const float *q, const float *k, const float *v, const lukv_attn_shape *s,
                             float *out, float *lse) {
  const int T = s->T, S = s->S, Hq = s->n_heads, Hkv = s->n_kv_heads, d = s->head_dim;
  const int group = Hq / Hkv;
  double *w = malloc(sizeof(double) * (size_t)S);
  if (!w) return -1;
  for (int h = 0; h < Hq; h++) {
    int g = h / group;
    for (int i = 0; i < T; i++) {
      /* written out again rather than sharing key_lo, so that the oracle does
       * not inherit a mistake of the code it checks */
      int p = S - T + i, lo = 0;
      if (s->window > 0)
        while (lo <= p && !(lo > p - s->window)) lo++;
      const float *qi = q + ((size_t)i * Hq + h) * d;
      double mx = -INFINITY, sum = 0.0;
      for (int j = lo; j <= p; j++) {
        const float *kj = k + ((size_t)j * Hkv + g) * d;
        double dot = 0.0;
        for (int c = 0; c < d; c++) dot += (double)qi[c] * kj[c];
        w[j] = dot / sqrt((double)d);
        if (w[j] > mx) mx = w[j];
      }
      for (int j = lo; j <= p; j++) sum += (w[j] = exp(w[j] - mx));
      float *o = out + ((size_t)i * Hq + h) * d;
      for (int c = 0; c < d; c++) {
        double a = 0.0;
        for (int j = lo; j <= p; j++) a += w[j] * v[((size_t)j * Hkv + g) * d + c];
        o[c] = (float)(a / sum);
      }
      lse[(size_t)h * T + i] = (float)(mx + log(sum));
    }
  }
  free(w);
  return 0;
}
