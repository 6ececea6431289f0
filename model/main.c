/* lukv-run: greedy continuation of a prompt, and how fast it came. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static const char usage[] =
    "usage: lukv-run (--model DIR|FILE.gguf | --random-init CONFIG.json [--seed N])\n"
    "                (--tokens FILE | --text FILE) [--generate N] [--device cpu|cuda|cuda-f32]\n"
    "\n"
    "Runs a Llama-family model (Llama, Mistral, Qwen2; Hugging Face directory with\n"
    "config.json and safetensors, or a llama.cpp GGUF file of a Llama) on a prompt\n"
    "and prints its greedy continuation on stdout, prefill and decode speed on stderr.\n"
    "\n"
    "  --model DIR|FILE.gguf  Hugging Face model directory, or a GGUF file (F32, F16,\n"
    "                         BF16, Q8_0, Q4_0, Q4_1 tensors; dequantised to f32 at load)\n"
    "  --random-init CONFIG   a config.json: same shape, seeded random weights (benchmarks)\n"
    "  --seed N               seed for --random-init (default 0)\n"
    "  --tokens FILE          prompt as whitespace-separated token ids; output: ids\n"
    "  --text FILE            prompt as raw bytes, one token per byte (byte-level\n"
    "                         models); output: bytes, unprintable ones as \\xNN\n"
    "  --generate N           tokens to generate (default 32)\n"
    "  --device D             backend: cpu (default, f32), cuda (bf16) or cuda-f32\n"
    "  --help                 this text\n";

static int fail(const char *msg) {
  fprintf(stderr, "lukv-run: %s\n", msg);
  return 1;
}

static int read_all(const char *path, char **buf, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap + 1);
  for (;;) {
    if (!b) break;
    n += fread(b + n, 1, cap - n, f);
    if (n < cap) break;
    char *nb = realloc(b, 2 * cap + 1);
    if (!nb) {
      free(b);
      b = NULL;
      break;
    }
    b = nb;
    cap *= 2;
  }
  int bad = ferror(f);
  fclose(f);
  if (!b || bad) {
    free(b);
    errno = b ? EIO : ENOMEM;
    return -1;
  }
  b[n] = '\0';
  *buf = b;
  *len = n;
  return 0;
}

/* Prompt ids from FILE: whitespace-separated decimal ids, or raw bytes. */
static int load_prompt(const char *path, int as_text, int vocab, int32_t **out, int *T, char *msg, size_t msz) {
  char *buf;
  size_t len;
  if (read_all(path, &buf, &len) != 0) {
    snprintf(msg, msz, "%s: file: cannot read (%s)", path, strerror(errno));
    return 1;
  }
  /* ids are ints and a prompt is one forward pass: 2^30 bytes is plenty */
  int32_t *tok = len < ((size_t)1 << 30) ? malloc(sizeof *tok * (len + 1)) : NULL;
  int n = 0, rc = 0;
  if (!tok) {
    snprintf(msg, msz, "%s: file: too large (%zu bytes) or out of memory", path, len);
    rc = 1;
  } else if (as_text) {
    for (size_t i = 0; i < len && !rc; i++) {
      tok[n] = (unsigned char)buf[i];
      if (tok[n] >= vocab) {
        snprintf(msg, msz, "%s: byte %zu: value %d >= vocab_size %d (not a byte-level model?)", path, i,
                 tok[n], vocab);
        rc = 1;
      }
      n++;
    }
  } else {
    char *p = buf;
    for (;;) {
      while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
      if (!*p) break;
      char *end;
      errno = 0;
      long v = strtol(p, &end, 10);
      if (end == p || errno || (*end && !strchr(" \t\r\n", *end))) {
        snprintf(msg, msz, "%s: token %d: \"%.20s\" is not an integer", path, n, p);
        rc = 1;
        break;
      }
      if (v < 0 || v >= vocab) {
        snprintf(msg, msz, "%s: token %d: id %ld outside [0, vocab_size %d)", path, n, v, vocab);
        rc = 1;
        break;
      }
      tok[n++] = (int32_t)v;
      p = end;
    }
  }
  free(buf);
  if (!rc && n == 0) {
    snprintf(msg, msz, "%s: file: no tokens", path);
    rc = 1;
  }
  if (rc) {
    free(tok);
    return 1;
  }
  *out = tok;
  *T = n;
  return 0;
}

int main(int argc, char **argv) {
  const char *model = NULL, *rand_cfg = NULL, *tokens = NULL, *text = NULL, *device = "cpu";
  long n_new = 32;
  unsigned long long seed = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      return 0;
    }
    const char **dst = !strcmp(a, "--model") ? &model : !strcmp(a, "--random-init") ? &rand_cfg
                     : !strcmp(a, "--tokens") ? &tokens : !strcmp(a, "--text") ? &text
                     : !strcmp(a, "--device") ? &device : NULL;
    int is_num = !strcmp(a, "--generate") || !strcmp(a, "--seed");
    if (!dst && !is_num) {
      fprintf(stderr, "lukv-run: unknown argument \"%s\" (see --help)\n", a);
      return 2;
    }
    if (!v) {
      fprintf(stderr, "lukv-run: %s needs a value\n", a);
      return 2;
    }
    i++;
    if (dst) {
      *dst = v;
      continue;
    }
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*v == '-' || !*v || *end || errno || (!strcmp(a, "--generate") && x > 1000000)) {
      fprintf(stderr, "lukv-run: %s: \"%s\" is not a valid count\n", a, v);
      return 2;
    }
    if (!strcmp(a, "--generate")) n_new = (long)x;
    else seed = x;
  }
  if (!!model + !!rand_cfg != 1) {
    fputs("lukv-run: give exactly one of --model and --random-init (see --help)\n", stderr);
    return 2;
  }
  if (!!tokens + !!text != 1) {
    fputs("lukv-run: give exactly one of --tokens and --text (see --help)\n", stderr);
    return 2;
  }
  lukv_device dev;
  if (lukv_device_parse(device, &dev) != LUKV_OK) {
    fprintf(stderr, "lukv-run: --device: \"%s\" is not cpu, cuda or cuda-f32\n", device);
    return 2;
  }

  lukv_error err = {0};
  lukv_model *m = NULL;
  int rc = model ? lukv_model_open(model, dev, &m, &err) : lukv_model_random(rand_cfg, seed, dev, &m, &err);
  if (rc != LUKV_OK) return fail(err.msg);
  const lukv_model_config *cfg = lukv_model_get_config(m);
  int32_t *prompt = NULL, *out = NULL;
  int T = 0;
  char msg[1024];
  if (load_prompt(tokens ? tokens : text, text != NULL, cfg->vocab_size, &prompt, &T, msg, sizeof msg)) {
    lukv_model_destroy(m);
    return fail(msg);
  }
  out = malloc(sizeof *out * (size_t)(n_new ? n_new : 1));
  lukv_gen_stats st = {0};
  if (!out) rc = lukv_error_set(&err, LUKV_ERR_NOMEM, "generate: out of memory");
  else rc = lukv_model_generate(m, prompt, T, (int)n_new, out, &st, &err);
  if (rc == LUKV_OK) {
    for (long i = 0; i < n_new; i++) {
      int t = out[i];
      if (tokens) printf("%s%d", i ? " " : "", t);
      else if (t >= 256) printf("<%d>", t);
      else if ((t >= 32 && t < 127 && t != '\\') || t == '\n' || t == '\t') putchar(t);
      else printf("\\x%02x", t);
    }
    putchar('\n');
    fflush(stdout);
    fprintf(stderr, "lukv-run: %s, %d layers, device %s: prefill %d tokens in %.3f s (%.1f tok/s); "
            "decode %ld tokens in %.3f s (%.1f tok/s)\n",
            cfg->arch_name, cfg->n_layers, device, T, st.prefill_s, st.prefill_s > 0 ? T / st.prefill_s : 0.0,
            n_new > 1 ? n_new - 1 : 0, st.decode_s, st.decode_s > 0 ? (n_new - 1) / st.decode_s : 0.0);
  }
  free(prompt);
  free(out);
  lukv_model_destroy(m);
  return rc == LUKV_OK ? 0 : fail(err.msg);
}
