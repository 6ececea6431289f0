#!/usr/bin/env python3
"""Golden fixtures for the engine's CPU reference (tests/test_model.c).

For each supported configuration this builds a tiny random-weight model with
Hugging Face transformers, saves it as a model directory under
tests/golden/<name>/ and records what transformers computes from it:

  golden.txt   text: prompts, their greedy continuations, logits layout
  logits.f32   raw little-endian float32 [P, T, V]: f32 logits of each prompt

Weights stored as bf16 / f16 are rounded first and the reference runs in f32
on the rounded values, so the C engine (which converts to f32) must match to
f32 rounding. Random weights are scaled so attention is peaked (RoPE and
masking mistakes show) and every bias and norm weight is non-trivial.

Greedy continuations are only accepted when each step's top-2 logit gap is
large compared with f32 noise (checked against a float64 run), so the test
can demand identical tokens. Run from the repository root:

  .venv/bin/python tools/make_golden.py          # needs torch, transformers, safetensors, numpy
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")
T_PROMPT = 40
N_GEN = 32
VOCAB = 256  # byte-level: a text prompt is its bytes

COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              max_position_embeddings=256, bos_token_id=None, eos_token_id=None, pad_token_id=None)

# name -> (config class, model class, config overrides, stored dtype, shard size or None, comment)
MODELS = {
    "llama_plain": (LlamaConfig, LlamaForCausalLM,
                    dict(num_attention_heads=4, num_key_value_heads=4), "float32", None,
                    "Llama, MHA, default RoPE, f32"),
    "llama3_rope": (LlamaConfig, LlamaForCausalLM,
                    dict(num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                         rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                           high_freq_factor=4.0, original_max_position_embeddings=64)),
                    "bfloat16", None,
                    "Llama 3.1 rope scaling (all three frequency bands hit), GQA 2, stored bf16"),
    "llama_linear_sharded": (LlamaConfig, LlamaForCausalLM,
                             dict(num_attention_heads=4, num_key_value_heads=1, rope_theta=10000.0,
                                  rope_scaling=dict(rope_type="linear", factor=4.0),
                                  attention_bias=True, mlp_bias=True),
                             "float32", "150KB",
                             "Llama linear rope scaling, MQA, attention_bias + mlp_bias, sharded f32"),
    "mistral_gqa": (MistralConfig, MistralForCausalLM,
                    dict(num_attention_heads=8, num_key_value_heads=2, head_dim=16, sliding_window=24,
                         rope_theta=10000.0),
                    "float16", None,
                    "Mistral, GQA 4, head_dim*heads != hidden, sliding window 24 < T, stored f16"),
    "qwen2_bias": (Qwen2Config, Qwen2ForCausalLM,
                   dict(num_attention_heads=4, num_key_value_heads=2, rope_theta=1000000.0),
                   "float32", None,
                   "Qwen2, q/k/v bias, GQA 2, rope_theta 1e6, f32"),
    "qwen2_tied": (Qwen2Config, Qwen2ForCausalLM,
                   dict(num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                        rope_theta=10000.0),
                   "bfloat16", None,
                   "Qwen2, tied embeddings, MQA head_dim 32, stored bf16"),
}

PROMPT0 = b"The quick brown fox jumps over the lazy d"  # 41 bytes -> first 40


def make_config(cls, over):
    kw = dict(COMMON)
    kw.update(over)
    cfg = cls(**kw)
    cfg._attn_implementation = "eager"
    return cfg


def randomize(model, gen):
    """Weights with scales that make every part of the model matter."""
    cfg = model.config
    D = cfg.hidden_size
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = p.shape
            if name.endswith("norm.weight"):
                v = 1.0 + 0.25 * torch.randn(shape, generator=gen, dtype=torch.float64)
            elif name.endswith(".bias"):
                v = 0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)
            elif "embed_tokens" in name:
                v = torch.randn(shape, generator=gen, dtype=torch.float64)
            elif "q_proj" in name or "k_proj" in name:
                # scores of std ~3: attention is peaked, so positions matter
                v = 0.22 * torch.randn(shape, generator=gen, dtype=torch.float64)
            elif "lm_head" in name:
                v = 3.0 / D ** 0.5 * torch.randn(shape, generator=gen, dtype=torch.float64)
            else:  # v, o, gate, up, down: keep the residual stream of order 1
                v = torch.randn(shape, generator=gen, dtype=torch.float64) / shape[1] ** 0.5
            p.copy_(v.to(p.dtype))


@torch.no_grad()
def logits_of(model, ids):
    return model(torch.tensor([ids])).logits[0]


@torch.no_grad()
def greedy(model, ids, n):
    """Greedy continuation by full recomputation (no cache involved), plus the
    smallest top-2 gap seen along the way."""
    ids = list(ids)
    out, gap = [], float("inf")
    for _ in range(n):
        lg = logits_of(model, ids)[-1]
        top2 = torch.topk(lg, 2).values
        gap = min(gap, float(top2[0] - top2[1]))
        t = int(torch.argmax(lg))
        out.append(t)
        ids.append(t)
    return out, gap


def build(name, spec, seed):
    cfg_cls, model_cls, over, dtype, shard, comment = spec
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = make_config(cfg_cls, over)
    model = model_cls(cfg).float().eval()
    randomize(model, gen)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    store = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    # round to the stored dtype once: the reference then runs on exactly the stored values
    model = model.to(store).to(torch.float32).eval()
    return model, store


def prompts():
    rng = np.random.default_rng(1234)
    p0 = list(PROMPT0[:T_PROMPT])
    p1 = [int(x) for x in rng.integers(0, VOCAB, size=T_PROMPT)]
    return [p0, p1]


def write_model(name, spec, model, store, d):
    shard = spec[4]
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    m = model.to(store)
    kw = {"max_shard_size": shard} if shard else {}
    m.save_pretrained(d, **kw)
    model.to(torch.float32)
    for extra in ("generation_config.json",):
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    files = sorted(os.listdir(d))
    if shard:
        assert "model.safetensors.index.json" in files, files
    return files


def sanity(name, spec, model, ps):
    """Checks that the feature a fixture exists for changes the output in HF
    itself (otherwise the fixture would not test it)."""
    cfg_cls, model_cls, over = spec[0], spec[1], spec[2]
    alt = {}
    if "rope_scaling" in over:
        alt = {"rope_scaling": None}
    elif over.get("sliding_window"):
        alt = {"sliding_window": None}
    if not alt:
        return
    over2 = dict(over)
    over2.update(alt)
    m2 = model_cls(make_config(cfg_cls, over2)).eval()
    m2.load_state_dict(model.state_dict())
    a, b = logits_of(model, ps[0]), logits_of(m2, ps[0])
    diff = float((a - b).abs().max())
    assert diff > 1e-2, f"{name}: {alt} does not change the logits ({diff})"
    print(f"  {name}: disabling {list(alt)[0]} changes logits by {diff:.3g}")


def main():
    os.makedirs(OUT, exist_ok=True)
    ps = prompts()
    total = 0
    summary = []
    for name, spec in MODELS.items():
        d = os.path.join(OUT, name)
        for seed in range(1, 50):
            model, store = build(name, spec, seed)
            files = write_model(name, spec, model, store, d)
            # The reference is the saved directory as transformers loads it in
            # f32 (not the in-memory model: casting a module also rounds its
            # RoPE inv_freq buffer, which loading does not).
            model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                         attn_implementation="eager").eval()
            m64 = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64,
                                                       attn_implementation="eager").eval()
            conts64 = [greedy(m64, p, N_GEN) for p in ps]
            conts = [greedy(model, p, N_GEN) for p in ps]
            lg = torch.stack([logits_of(model, p) for p in ps])  # [P, T, V]
            scale = float(lg.abs().max())
            ok = all(c[0] == c64[0] for c, c64 in zip(conts, conts64))
            min_gap = min(c[1] for c in conts64)
            # a gap of 1e-3 of the logit scale is ~100x the f32 noise we allow
            if ok and min_gap > 1e-3 * scale:
                break
            print(f"  {name}: seed {seed} has a near-tie (gap {min_gap:.2e}, scale {scale:.2f}); next seed")
        else:
            sys.exit(f"{name}: no seed without near-ties")
        sanity(name, spec, model, ps)
        lg.numpy().astype("<f4").tofile(os.path.join(d, "logits.f32"))
        with open(os.path.join(d, "golden.txt"), "w") as f:
            f.write("lukv-golden 1\n")
            f.write(f"# {spec[5]}\n")
            f.write(f"# transformers {transformers.__version__}, torch {torch.__version__}, seed {seed}, "
                    f"stored {spec[3]}, eager attention\n")
            f.write(f"vocab {VOCAB}\nprompts {len(ps)}\nprompt_len {T_PROMPT}\ngenerate {N_GEN}\n")
            f.write(f"logits logits.f32 {len(ps)} {T_PROMPT} {VOCAB}\n")
            f.write(f"max_abs_logit {scale:.9g}\nmin_greedy_gap {min_gap:.9g}\n")
            for i, (p, c) in enumerate(zip(ps, conts)):
                f.write(f"prompt {i} " + " ".join(map(str, p)) + "\n")
                f.write(f"greedy {i} " + " ".join(map(str, c[0])) + "\n")
        size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
        total += size
        summary.append(f"{name:22s} {size / 1024:7.1f} KB  files {files}  scale {scale:.2f}  gap {min_gap:.3g}")
    for s in summary:
        print(s)
    print(f"total {total / 1024:.1f} KB")


if __name__ == "__main__":
    main()
