/* The `real` suite: SmolLM2-135M-Instruct (Q4_1 GGUF, fetched by
 * scripts/fetch-smollm2, never committed) through the CPU engine against
 * Hugging Face transformers loading the same file
 * (tests/golden/smollm2/, made by tools/make_smollm2_golden.py):
 *   - last-position logits of each fixed prompt within 1e-3 of max|logit|;
 *   - the greedy 32-token continuation of each prompt identical.
 * Prints load time and prefill / decode speed.
 * In a build with CUDA and a usable device (or cudasim), the bf16 CUDA path
 * against the CPU path on the same prompts: last-position logits within
 * 2e-2 of max|logit| (issue 3's bf16 bound) and the first greedy token the
 * same; how many of the 32 greedy tokens agree before the first difference
 * is printed (bf16 may break a near-tie later). Then the f32 CUDA backend
 * (LUKV_DEVICE_CUDA_F32): logits within 1e-4 of max|logit| of the CPU's
 * and all 32 greedy tokens the same, as two f32 engines must be.
 *
 * The model is looked for at $LUKV_SMOLLM2_GGUF, else where
 * scripts/fetch-smollm2 puts it; when it is not there the test prints
 * "real suite skipped: ..." and exits 77 (meson: SKIP).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lukv_config.h"
#include "model.h"

enum { MAXP = 8, MAXT = 1024 };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int read_ids(const char *s, int32_t *out, int cap) {
  int n = 0, off;
  long v;
  while (n < cap && sscanf(s, "%ld%n", &v, &off) == 1) out[n++] = (int32_t)v, s += off;
  return n;
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int main(void) {
  char gguf[2048];
  const char *env = getenv("LUKV_SMOLLM2_GGUF");
  if (env && *env) {
    snprintf(gguf, sizeof gguf, "%s", env);
  } else {
    const char *cache = getenv("LUKV_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[1536];
    if (cache && *cache) snprintf(base, sizeof base, "%s", cache);
    else if (xdg && *xdg) snprintf(base, sizeof base, "%s/lukv", xdg);
    else snprintf(base, sizeof base, "%s/.cache/lukv", home ? home : ".");
    snprintf(gguf, sizeof gguf, "%s/smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf", base);
  }
  if (!is_file(gguf)) {
    printf("real suite skipped: SmolLM2 GGUF not found at %s (run scripts/fetch-smollm2, or set "
           "LUKV_SMOLLM2_GGUF)\n", gguf);
    return 77;
  }

  /* fixture */
  const char *src = getenv("LUKV_SOURCE");
  char dir[1536], path[2048], line[16384], lname[256] = "";
  snprintf(dir, sizeof dir, "%s/tests/golden/smollm2", src && *src ? src : ".");
  snprintf(path, sizeof path, "%s/golden.txt", dir);
  FILE *f = fopen(path, "r");
  if (!f) {
    printf("FAIL: cannot open %s\n", path);
    return 1;
  }
  static int32_t prompt[MAXP][MAXT], greedy[MAXP][MAXT];
  int plen[MAXP] = {0}, glen[MAXP] = {0}, P = 0, V = 0, n_gen = 0;
  double scale[MAXP] = {0};
  while (fgets(line, sizeof line, f)) {
    int i, off;
    double x;
    if (sscanf(line, "logits %255s %d %d", lname, &P, &V) == 3) continue;
    if (sscanf(line, "generate %d", &n_gen) == 1) continue;
    if (sscanf(line, "max_abs_logit %d %lf", &i, &x) == 2 && i >= 0 && i < MAXP) scale[i] = x;
    else if (sscanf(line, "prompt %d %n", &i, &off) == 1 && i >= 0 && i < MAXP) plen[i] = read_ids(line + off, prompt[i], MAXT);
    else if (sscanf(line, "greedy %d %n", &i, &off) == 1 && i >= 0 && i < MAXP) glen[i] = read_ids(line + off, greedy[i], MAXT);
  }
  fclose(f);
  if (P < 1 || P > MAXP || V < 1 || n_gen < 1 || !lname[0]) {
    printf("FAIL: %s: incomplete fixture\n", path);
    return 1;
  }
  float *ref = malloc(sizeof(float) * (size_t)P * V), *lg = malloc(sizeof(float) * (size_t)V);
  snprintf(path, sizeof path, "%s/%s", dir, lname);
  f = fopen(path, "rb");
  if (!ref || !lg || !f || fread(ref, sizeof(float), (size_t)P * V, f) != (size_t)P * V) {
    printf("FAIL: cannot read %s\n", path);
    return 1;
  }
  fclose(f);

  lukv_error err = {0};
  lukv_model *m = NULL;
  double t0 = now_s();
  if (lukv_model_open(gguf, LUKV_DEVICE_CPU, &m, &err) != LUKV_OK) {
    printf("FAIL: %s\n", err.msg);
    return 1;
  }
  double t_load = now_s() - t0;
  const lukv_model_config *c = lukv_model_get_config(m);
  printf("%s: %d layers, D %d, heads %d/%d, d %d, I %d, V %d, tied %d; loaded (dequantised to f32) in %.2f s\n",
         gguf, c->n_layers, c->hidden_size, c->n_heads, c->n_kv_heads, c->head_dim, c->intermediate_size,
         c->vocab_size, c->tie_word_embeddings, t_load);
  int fails = 0;
  if (c->vocab_size != V) {
    printf("FAIL: vocab %d, fixture %d\n", c->vocab_size, V);
    fails++;
  }
  double pre_tok = 0, pre_s = 0, dec_tok = 0, dec_s = 0;
  float *cpu_lg = malloc(sizeof(float) * (size_t)P * V); /* the CPU's logits, for the CUDA comparison */
  static int32_t cpu_gen[MAXP][MAXT];
  if (!cpu_lg) {
    printf("FAIL: out of memory\n");
    return 1;
  }
  lukv_forward_opts last = {.last_logits_only = 1};
  for (int p = 0; p < P && !fails; p++) {
    if (plen[p] < 1 || glen[p] != n_gen || scale[p] <= 0) {
      printf("FAIL: prompt %d: incomplete fixture\n", p);
      fails++;
      break;
    }
    if (lukv_model_forward(m, NULL, prompt[p], plen[p], &last, lg, &err) != LUKV_OK) {
      printf("FAIL: %s\n", err.msg);
      fails++;
      break;
    }
    memcpy(cpu_lg + (size_t)p * V, lg, sizeof(float) * (size_t)V);
    const float *r = ref + (size_t)p * V;
    double worst = 0;
    for (int i = 0; i < V; i++) {
      double d = (double)lg[i] - r[i];
      if (d < 0) d = -d;
      if (!(d <= worst)) worst = d;
    }
    int32_t out[MAXT];
    lukv_gen_stats st;
    if (lukv_model_generate(m, prompt[p], plen[p], n_gen, out, &st, &err) != LUKV_OK) {
      printf("FAIL: %s\n", err.msg);
      fails++;
      break;
    }
    memcpy(cpu_gen[p], out, sizeof(int32_t) * (size_t)n_gen);
    int first_diff = -1;
    for (int i = 0; i < n_gen && first_diff < 0; i++)
      if (out[i] != greedy[p][i]) first_diff = i;
    pre_tok += plen[p], pre_s += st.prefill_s, dec_tok += n_gen - 1, dec_s += st.decode_s;
    printf("prompt %d (%d tokens): max |logit - HF| %.3g = %.3g of max|logit| %.2f; greedy %d tokens %s; "
           "prefill %.1f tok/s, decode %.1f tok/s\n",
           p, plen[p], worst, worst / scale[p], scale[p], n_gen,
           first_diff < 0 ? "identical" : "DIFFER", plen[p] / st.prefill_s, (n_gen - 1) / st.decode_s);
    if (!(worst <= 1e-3 * scale[p])) {
      printf("FAIL: prompt %d: logits differ by %g > 1e-3 x %g\n", p, worst, scale[p]);
      fails++;
    }
    if (first_diff >= 0) {
      printf("FAIL: prompt %d: greedy token %d is %d, transformers %d\n", p, first_diff, out[first_diff],
             greedy[p][first_diff]);
      fails++;
    }
  }
  if (!fails)
    printf("SmolLM2-135M-Instruct Q4_1: %d prompts match transformers; load %.2f s, prefill %.1f tok/s, "
           "decode %.1f tok/s\n", P, t_load, pre_tok / pre_s, dec_tok / dec_s);
  lukv_model_destroy(m);
  m = NULL;

#if LUKV_HAVE_CUDA
  /* {device, logit tolerance x max|logit|, greedy tokens that must agree} */
  const struct {
    lukv_device dev;
    double tol;
    int agree_min;
  } gpu[] = {{LUKV_DEVICE_CUDA, 2e-2, 1}, {LUKV_DEVICE_CUDA_F32, 1e-4, n_gen}};
  for (size_t gi = 0; gi < sizeof gpu / sizeof gpu[0] && !fails; gi++) {
    const char *dn = lukv_device_name(gpu[gi].dev);
    t0 = now_s();
    if (lukv_model_open(gguf, gpu[gi].dev, &m, &err) != LUKV_OK) {
      printf("%s part skipped: %s\n", dn, err.msg); /* no usable device */
      continue;
    }
    printf("%s: loaded in %.2f s\n", dn, now_s() - t0);
    for (int p = 0; p < P && !fails; p++) {
      int32_t out[MAXT];
      lukv_gen_stats st;
      if (lukv_model_forward(m, NULL, prompt[p], plen[p], &last, lg, &err) != LUKV_OK ||
          lukv_model_generate(m, prompt[p], plen[p], n_gen, out, &st, &err) != LUKV_OK) {
        printf("FAIL: %s: %s\n", dn, err.msg);
        fails++;
        break;
      }
      const float *cl = cpu_lg + (size_t)p * V;
      double worst = 0, mx = 0;
      for (int i = 0; i < V; i++) {
        const double d = (double)lg[i] - cl[i], a = cl[i] < 0 ? -cl[i] : cl[i];
        if (!((d < 0 ? -d : d) <= worst)) worst = d < 0 ? -d : d;
        if (a > mx) mx = a;
      }
      int agree = 0;
      while (agree < n_gen && out[agree] == cpu_gen[p][agree]) agree++;
      printf("%s prompt %d: max |logit - CPU| %.3g = %.3g of max|logit|; greedy: %d of %d tokens as the CPU "
             "before the first difference\n", dn, p, worst, worst / mx, agree, n_gen);
      if (!(worst <= gpu[gi].tol * mx)) {
        printf("FAIL: %s prompt %d: logits differ from the CPU's by %g > %g x %g\n", dn, p, worst, gpu[gi].tol, mx);
        fails++;
      }
      if (agree < gpu[gi].agree_min) {
        printf("FAIL: %s prompt %d: greedy token %d is %d, CPU %d\n", dn, p, agree, out[agree], cpu_gen[p][agree]);
        fails++;
      }
    }
    lukv_model_destroy(m);
    m = NULL;
  }
#endif
  free(cpu_lg);
  free(ref);
  free(lg);
  return fails ? 1 : 0;
}
