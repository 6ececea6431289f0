/* A Llama-family model's shape and hyper-parameters, read from a Hugging Face
 * `config.json`.
 *
 * Accepted architectures ("architectures"[0], else "model_type"):
 *   LlamaForCausalLM (llama), MistralForCausalLM (mistral), Qwen2ForCausalLM (qwen2).
 * RoPE parameters come from `rope_scaling` + `rope_theta` (transformers 4.x) or
 * `rope_parameters` (transformers 5.x); rope types: default, linear, llama3.
 * Missing optional keys take the defaults of the matching transformers config
 * class. Anything else (another architecture, rope type or activation, a
 * partial rotary factor) is LUKV_ERR_UNSUPPORTED, never silently approximated.
 * Errors read "PATH: KEY: problem".
 */
#ifndef LUKV_CONFIG_H
#define LUKV_CONFIG_H

#include <stddef.h>

#include "status.h"

#define LUKV_MAX_LAYERS 1024

typedef enum lukv_arch { LUKV_ARCH_LLAMA, LUKV_ARCH_MISTRAL, LUKV_ARCH_QWEN2 } lukv_arch;
typedef enum lukv_rope_type { LUKV_ROPE_DEFAULT, LUKV_ROPE_LINEAR, LUKV_ROPE_LLAMA3 } lukv_rope_type;

typedef struct lukv_model_config {
  lukv_arch arch;
  char arch_name[64];            /* as written in config.json */
  int vocab_size;                /* V */
  int hidden_size;               /* D */
  int intermediate_size;         /* I */
  int n_layers;                  /* L */
  int n_heads;                   /* Hq */
  int n_kv_heads;                /* Hkv; Hq % Hkv == 0 (GQA group Hq / Hkv) */
  int head_dim;                  /* d (may differ from D / Hq); even */
  int max_position_embeddings;
  double rms_norm_eps;
  int tie_word_embeddings;       /* lm_head shares embed_tokens */
  int qkv_bias;                  /* q/k/v_proj have a bias (Qwen2; Llama attention_bias) */
  int o_bias;                    /* o_proj has a bias (Llama attention_bias) */
  int mlp_bias;                  /* gate/up/down_proj have a bias (Llama mlp_bias) */
  /* RoPE (HF rotate-half) */
  double rope_theta;
  lukv_rope_type rope_type;
  double rope_factor;            /* linear, llama3 */
  double rope_low_freq_factor;   /* llama3 */
  double rope_high_freq_factor;  /* llama3 */
  int rope_original_max_pos;     /* llama3 */
  /* Sliding-window attention: a query at position p sees keys j with
   * p - window < j <= p on layers where layer_sliding[l] is set. */
  int sliding_window;            /* 0: none anywhere */
  unsigned char layer_sliding[LUKV_MAX_LAYERS];
  double initializer_range;      /* std of --random-init weights */
} lukv_model_config;

/* Parses config.json at path. */
int lukv_config_read(const char *path, lukv_model_config *cfg, lukv_error *err);
/* Parses JSON text (len bytes, need not be terminated); path names it in messages. */
int lukv_config_parse(const char *path, const char *json, size_t len, lukv_model_config *cfg,
                      lukv_error *err);

const char *lukv_arch_name(lukv_arch a);
const char *lukv_rope_type_name(lukv_rope_type t);

/* RoPE inverse frequencies, scaling applied, as transformers computes them
 * (f32): inv_freq [d/2]. */
void lukv_config_rope_inv_freq(const lukv_model_config *cfg, float *inv_freq);

/* Window of layer l in tokens, 0 for full causal attention. */
static inline int lukv_config_layer_window(const lukv_model_config *cfg, int l) {
  return cfg->sliding_window > 0 && cfg->layer_sliding[l] ? cfg->sliding_window : 0;
}

#endif
