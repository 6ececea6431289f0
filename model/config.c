#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *lukv_arch_name(lukv_arch a) {
  switch (a) {
  case LUKV_ARCH_LLAMA: return "LlamaForCausalLM";
  case LUKV_ARCH_MISTRAL: return "MistralForCausalLM";
  case LUKV_ARCH_QWEN2: return "Qwen2ForCausalLM";
  }
  return "?";
}

const char *lukv_rope_type_name(lukv_rope_type t) {
  switch (t) {
  case LUKV_ROPE_DEFAULT: return "default";
  case LUKV_ROPE_LINEAR: return "linear";
  case LUKV_ROPE_LLAMA3: return "llama3";
  }
  return "?";
}

/* Integer key: absent or null -> def (def < 0 means required). */
static int get_int(const char *path, const cJSON *root, const char *key, long def, long lo, long hi,
                   int *out, lukv_error *err) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!j || cJSON_IsNull(j)) {
    if (def < 0) return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: missing", path, key);
    *out = (int)def;
    return LUKV_OK;
  }
  if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble))
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: not an integer", path, key);
  if (j->valuedouble < (double)lo || j->valuedouble > (double)hi)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: %.17g outside [%ld, %ld]", path, key,
                          j->valuedouble, lo, hi);
  *out = (int)j->valuedouble;
  return LUKV_OK;
}

/* Positive finite number; absent or null -> def (def < 0 means required). */
static int get_pos(const char *path, const char *where, const cJSON *obj, const char *key, double def,
                   double *out, lukv_error *err) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!j || cJSON_IsNull(j)) {
    if (def < 0) return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s%s: missing", path, where, key);
    *out = def;
    return LUKV_OK;
  }
  if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble) || !(j->valuedouble > 0))
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s%s: not a positive number", path, where, key);
  *out = j->valuedouble;
  return LUKV_OK;
}

static int get_bool(const char *path, const cJSON *root, const char *key, int def, int *out,
                    lukv_error *err) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!j || cJSON_IsNull(j)) {
    *out = def;
    return LUKV_OK;
  }
  if (!cJSON_IsBool(j)) return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: not a boolean", path, key);
  *out = cJSON_IsTrue(j);
  return LUKV_OK;
}

static int parse_arch(const char *path, const cJSON *root, lukv_model_config *c, lukv_error *err) {
  static const struct {
    const char *arch, *type;
    lukv_arch id;
  } known[] = {{"LlamaForCausalLM", "llama", LUKV_ARCH_LLAMA},
               {"MistralForCausalLM", "mistral", LUKV_ARCH_MISTRAL},
               {"Qwen2ForCausalLM", "qwen2", LUKV_ARCH_QWEN2}};
  const cJSON *ja = cJSON_GetObjectItemCaseSensitive(root, "architectures");
  const cJSON *jt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
  const char *name = NULL, *key = "architectures";
  if (cJSON_IsArray(ja) && cJSON_GetArraySize(ja) >= 1) {
    const cJSON *a0 = cJSON_GetArrayItem(ja, 0);
    if (!cJSON_IsString(a0))
      return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: architectures: not a list of strings", path);
    name = a0->valuestring;
  } else if (cJSON_IsString(jt)) {
    name = jt->valuestring;
    key = "model_type";
  } else {
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: architectures: missing (and no model_type)", path);
  }
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(name, known[i].arch) == 0 || strcmp(name, known[i].type) == 0) {
      c->arch = known[i].id;
      snprintf(c->arch_name, sizeof c->arch_name, "%s", name);
      return LUKV_OK;
    }
  return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                        "%s: %s: unknown architecture \"%.64s\" (supported: LlamaForCausalLM, "
                        "MistralForCausalLM, Qwen2ForCausalLM)",
                        path, key, name);
}

static int parse_rope(const char *path, const cJSON *root, lukv_model_config *c, lukv_error *err) {
  const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
  const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
  const cJSON *rd = NULL;
  const char *where = "";
  char wbuf[64];
  if (cJSON_IsObject(rp)) {
    rd = rp;
    where = "rope_parameters.";
  } else if (cJSON_IsObject(rs)) {
    rd = rs;
    where = "rope_scaling.";
  } else if ((rp && !cJSON_IsNull(rp)) || (rs && !cJSON_IsNull(rs))) {
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: not an object", path,
                          rp && !cJSON_IsNull(rp) ? "rope_parameters" : "rope_scaling");
  }
  int rc = get_pos(path, "", root, "rope_theta", 10000.0, &c->rope_theta, err);
  if (rc == LUKV_OK && rd) rc = get_pos(path, where, rd, "rope_theta", c->rope_theta, &c->rope_theta, err);
  if (rc != LUKV_OK) return rc;
  c->rope_type = LUKV_ROPE_DEFAULT;
  c->rope_factor = 1.0;
  double prf = 1.0;
  rc = get_pos(path, "", root, "partial_rotary_factor", 1.0, &prf, err);
  if (rc == LUKV_OK && rd) rc = get_pos(path, where, rd, "partial_rotary_factor", prf, &prf, err);
  if (rc != LUKV_OK) return rc;
  if (prf != 1.0)
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: partial_rotary_factor: %g (only 1 is supported)", path, prf);
  if (!rd) return LUKV_OK;
  const cJSON *jt = cJSON_GetObjectItemCaseSensitive(rd, "rope_type");
  snprintf(wbuf, sizeof wbuf, "%srope_type", where);
  if (!jt) {
    jt = cJSON_GetObjectItemCaseSensitive(rd, "type");
    snprintf(wbuf, sizeof wbuf, "%stype", where);
  }
  if (!jt || cJSON_IsNull(jt)) {
    /* transformers 5 nests one dict per layer type; no model here needs that. */
    for (const cJSON *e = rd->child; e; e = e->next)
      if (cJSON_IsObject(e))
        return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: %s%s: per-layer RoPE parameters are not supported",
                              path, where, e->string);
    return LUKV_OK;
  }
  if (!cJSON_IsString(jt)) return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: not a string", path, wbuf);
  const char *t = jt->valuestring;
  if (strcmp(t, "default") == 0) return LUKV_OK;
  if (strcmp(t, "linear") == 0) {
    c->rope_type = LUKV_ROPE_LINEAR;
    return get_pos(path, where, rd, "factor", -1, &c->rope_factor, err);
  }
  if (strcmp(t, "llama3") == 0) {
    c->rope_type = LUKV_ROPE_LLAMA3;
    double omp = 0;
    rc = get_pos(path, where, rd, "factor", -1, &c->rope_factor, err);
    if (rc == LUKV_OK) rc = get_pos(path, where, rd, "low_freq_factor", -1, &c->rope_low_freq_factor, err);
    if (rc == LUKV_OK) rc = get_pos(path, where, rd, "high_freq_factor", -1, &c->rope_high_freq_factor, err);
    if (rc == LUKV_OK)
      rc = get_pos(path, where, rd, "original_max_position_embeddings", c->max_position_embeddings, &omp, err);
    if (rc != LUKV_OK) return rc;
    if (omp != floor(omp) || omp > 1e9)
      return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %soriginal_max_position_embeddings: not an integer",
                            path, where);
    c->rope_original_max_pos = (int)omp;
    if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
      return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %shigh_freq_factor: must exceed low_freq_factor", path,
                            where);
    return LUKV_OK;
  }
  return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                        "%s: %s: unknown rope type \"%.64s\" (supported: default, linear, llama3)", path,
                        wbuf, t);
}

static int parse_window(const char *path, const cJSON *root, lukv_model_config *c, lukv_error *err) {
  c->sliding_window = 0;
  memset(c->layer_sliding, 0, sizeof c->layer_sliding);
  if (c->arch == LUKV_ARCH_LLAMA) return LUKV_OK;
  int rc, use = 1, window = 0, first_sliding = 0;
  if (c->arch == LUKV_ARCH_MISTRAL) {
    rc = get_int(path, root, "sliding_window", 4096, 1, 1L << 30, &window, err);
    /* explicit null means "no window"; get_int maps it to the default */
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    if (j && cJSON_IsNull(j)) window = 0;
  } else { /* Qwen2: off unless use_sliding_window; then only layers >= max_window_layers */
    rc = get_bool(path, root, "use_sliding_window", 0, &use, err);
    if (rc == LUKV_OK) rc = get_int(path, root, "sliding_window", 0, 1, 1L << 30, &window, err);
    if (rc == LUKV_OK) rc = get_int(path, root, "max_window_layers", 28, 0, 1L << 30, &first_sliding, err);
    if (!use) window = 0;
  }
  if (rc != LUKV_OK || window == 0) return rc;
  c->sliding_window = window;
  const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
  if (lt && !cJSON_IsNull(lt)) {
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
      return lukv_error_set(err, LUKV_ERR_SHAPE, "%s: layer_types: not a list of %d strings", path, c->n_layers);
    int l = 0;
    for (const cJSON *e = lt->child; e; e = e->next, l++) {
      if (cJSON_IsString(e) && strcmp(e->valuestring, "full_attention") == 0) c->layer_sliding[l] = 0;
      else if (cJSON_IsString(e) && strcmp(e->valuestring, "sliding_attention") == 0) c->layer_sliding[l] = 1;
      else
        return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: layer_types[%d]: not \"full_attention\" or "
                              "\"sliding_attention\"", path, l);
    }
    return LUKV_OK;
  }
  for (int l = 0; l < c->n_layers; l++)
    c->layer_sliding[l] = c->arch == LUKV_ARCH_MISTRAL || l >= first_sliding;
  return LUKV_OK;
}

int lukv_config_parse(const char *path, const char *json, size_t len, lukv_model_config *c,
                      lukv_error *err) {
  memset(c, 0, sizeof *c);
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (!root || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: config: not a valid JSON object", path);
  }
  int rc = parse_arch(path, root, c, err);
  /* Bounds keep every weight's element count well inside 64 bits and the
   * per-row products inside int. */
  if (rc == LUKV_OK) rc = get_int(path, root, "vocab_size", -1, 1, 1L << 24, &c->vocab_size, err);
  if (rc == LUKV_OK) rc = get_int(path, root, "hidden_size", -1, 1, 1L << 16, &c->hidden_size, err);
  if (rc == LUKV_OK) rc = get_int(path, root, "intermediate_size", -1, 1, 1L << 20, &c->intermediate_size, err);
  if (rc == LUKV_OK) rc = get_int(path, root, "num_hidden_layers", -1, 1, LUKV_MAX_LAYERS, &c->n_layers, err);
  if (rc == LUKV_OK) rc = get_int(path, root, "num_attention_heads", -1, 1, 1024, &c->n_heads, err);
  long kv_def = c->arch == LUKV_ARCH_MISTRAL ? 8 : c->arch == LUKV_ARCH_QWEN2 ? 32 : c->n_heads;
  if (rc == LUKV_OK) rc = get_int(path, root, "num_key_value_heads", kv_def, 1, 1024, &c->n_kv_heads, err);
  if (rc == LUKV_OK) rc = get_int(path, root, "head_dim", c->hidden_size / c->n_heads, 1, 1024, &c->head_dim, err);
  long mp_def = c->arch == LUKV_ARCH_MISTRAL ? 131072 : c->arch == LUKV_ARCH_QWEN2 ? 32768 : 2048;
  if (rc == LUKV_OK)
    rc = get_int(path, root, "max_position_embeddings", mp_def, 1, 1L << 30, &c->max_position_embeddings, err);
  if (rc == LUKV_OK) rc = get_pos(path, "", root, "rms_norm_eps", 1e-6, &c->rms_norm_eps, err);
  if (rc == LUKV_OK) rc = get_pos(path, "", root, "initializer_range", 0.02, &c->initializer_range, err);
  if (rc == LUKV_OK) rc = get_bool(path, root, "tie_word_embeddings", 0, &c->tie_word_embeddings, err);
  if (rc == LUKV_OK && c->arch == LUKV_ARCH_LLAMA) {
    rc = get_bool(path, root, "attention_bias", 0, &c->qkv_bias, err);
    c->o_bias = c->qkv_bias;
    if (rc == LUKV_OK) rc = get_bool(path, root, "mlp_bias", 0, &c->mlp_bias, err);
  }
  if (c->arch == LUKV_ARCH_QWEN2) c->qkv_bias = 1;
  if (rc == LUKV_OK) {
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
      rc = lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: hidden_act: only \"silu\" is supported", path);
  }
  if (rc == LUKV_OK && c->n_heads % c->n_kv_heads != 0)
    rc = lukv_error_set(err, LUKV_ERR_SHAPE, "%s: num_key_value_heads: %d does not divide num_attention_heads %d",
                        path, c->n_kv_heads, c->n_heads);
  if (rc == LUKV_OK && c->head_dim < 2)
    rc = lukv_error_set(err, LUKV_ERR_RANGE, "%s: head_dim: missing and hidden_size / num_attention_heads < 2", path);
  if (rc == LUKV_OK && c->head_dim % 2 != 0)
    rc = lukv_error_set(err, LUKV_ERR_SHAPE, "%s: head_dim: %d is odd (RoPE rotates halves)", path, c->head_dim);
  if (rc == LUKV_OK) rc = parse_rope(path, root, c, err);
  if (rc == LUKV_OK) rc = parse_window(path, root, c, err);
  cJSON_Delete(root);
  return rc;
}

int lukv_config_read(const char *path, lukv_model_config *cfg, lukv_error *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return lukv_error_set(err, LUKV_ERR_IO, "%s: file: cannot open (%s)", path, strerror(errno));
  /* A config is a few KB; a multi-MB one is not a config. */
  enum { CAP = 1 << 22 };
  char *buf = malloc(CAP);
  size_t n = buf ? fread(buf, 1, CAP, fp) : 0;
  int ioerr = ferror(fp);
  fclose(fp);
  if (!buf) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: file: out of memory", path);
  int rc;
  if (ioerr) rc = lukv_error_set(err, LUKV_ERR_IO, "%s: file: read error", path);
  else if (n == CAP) rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: file: larger than %d bytes", path, CAP);
  else rc = lukv_config_parse(path, buf, n, cfg, err);
  free(buf);
  return rc;
}

void lukv_config_rope_inv_freq(const lukv_model_config *c, float *inv_freq) {
  int d = c->head_dim;
  for (int i = 0; i < d / 2; i++) {
    /* transformers: 1 / base ** (arange(0, d, 2) / d), in f32 */
    float e = (float)(2 * i) / (float)d;
    float f = (float)(1.0 / pow(c->rope_theta, (double)e));
    if (c->rope_type == LUKV_ROPE_LINEAR) {
      f = (float)(f / c->rope_factor);
    } else if (c->rope_type == LUKV_ROPE_LLAMA3) {
      /* Llama 3.1: long wavelengths slowed by `factor`, short ones kept,
       * the band between interpolated. */
      double old = c->rope_original_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
      double factor = c->rope_factor;
      double low_wl = old / lo, high_wl = old / hi;
      float wl = (float)(2.0 * 3.14159265358979323846 / f);
      if (wl > low_wl) {
        f = (float)(f / factor);
      } else if (!(wl < high_wl)) {
        double smooth = (old / wl - lo) / (hi - lo);
        f = (float)((1.0 - smooth) * f / factor + smooth * f);
      }
    }
    inv_freq[i] = f;
  }
}
