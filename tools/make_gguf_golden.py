#!/usr/bin/env python3
"""Golden fixtures for the engine's GGUF reader (tests/test_gguf.c).

1. tests/golden/gguf_<variant>/: a tiny random Llama written as a GGUF file
   the way llama.cpp's convert_hf_to_gguf.py writes one (Q and K rows
   permuted into llama.cpp's RoPE layout, 1-D tensors F32, matrices in the
   variant's type), and what Hugging Face transformers computes after loading
   that file with `from_pretrained(dir, gguf_file=...)` (transformers
   dequantises with the `gguf` package and undoes the permutation itself):

     model.gguf   the model
     golden.txt   prompts, greedy continuations, logits layout (tools/make_golden.py's format)
     logits.f32   raw little-endian float32 [P, T, V]

   The engine must match the logits to 1e-3 of max|logit| (in practice f32
   rounding) and the greedy tokens exactly; seeds with a near-tie on the
   greedy path (top-2 gap under 1e-3 of the scale, or f32 and f64 greedy
   disagreeing) are skipped, as in make_golden.py.

2. tests/golden/gguf_dequant/blocks.gguf: for each of F32, F16, BF16, Q8_0,
   Q4_0, Q4_1 a tensor "raw.<TYPE>" of 8 blocks of random bytes (so scales
   take every f16 bit pattern class: normal, subnormal, negative, inf, nan)
   and a tensor "expect.<TYPE>" F32 holding gguf.dequantize() of it.

Run from the repository root:

  .venv/bin/python tools/make_gguf_golden.py   # torch, transformers, accelerate, gguf, numpy
"""
import importlib.metadata
import os
import shutil
import sys

import gguf
import numpy as np
import torch
import transformers
from gguf import GGMLQuantizationType as Q
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import greedy, logits_of, randomize  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")
T_PROMPT = 32
N_GEN = 32
VOCAB = 256

SHAPE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
             rope_theta=10000.0, rms_norm_eps=1e-5, bos_token_id=None, eos_token_id=None, pad_token_id=None)

# name -> (matrix type, embedding type, tied, alignment or None, comment)
VARIANTS = {
    "gguf_f16": (Q.F16, Q.F16, False, None, "matrices and embeddings F16, untied output"),
    "gguf_q8_0": (Q.Q8_0, Q.Q8_0, False, None, "Q8_0, untied output"),
    "gguf_q4_0": (Q.Q4_0, Q.Q8_0, True, 64, "Q4_0 matrices, Q8_0 tied embeddings, general.alignment 64"),
    "gguf_q4_1": (Q.Q4_1, Q.Q8_0, True, None, "Q4_1 matrices, Q8_0 tied embeddings (SmolLM2's mix), BF16 norms"),
}


def permute(w, n_head, n_head_kv):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (HF rotate-half rows
    -> interleaved pairs)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def hf_to_gguf_name(name):
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if name in top:
        return top[name]
    parts = name.split(".")
    layer, rest = parts[2], ".".join(parts[3:])
    sub = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
           "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
           "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
           "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
           "mlp.down_proj.weight": "ffn_down.weight"}
    return f"blk.{layer}.{sub[rest]}"


def write_gguf(path, model, mat_type, emb_type, tied, align, norm_type=Q.F32):
    cfg = model.config
    w = gguf.GGUFWriter(path, "llama")
    if align:
        w.add_custom_alignment(align)
    w.add_name("lukv tiny random llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"] if hasattr(cfg, "rope_parameters") else cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"<{i}>" for i in range(cfg.vocab_size)])
    for name, p in model.state_dict().items():
        if "rotary" in name or (tied and name == "lm_head.weight"):
            continue
        a = p.detach().to(torch.float32).numpy()
        if name.endswith("q_proj.weight"):
            a = permute(a, cfg.num_attention_heads, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            a = permute(a, cfg.num_attention_heads, cfg.num_key_value_heads)
        qt = norm_type if a.ndim == 1 else emb_type if name in ("model.embed_tokens.weight", "lm_head.weight") \
            else mat_type
        if qt == Q.F32:
            w.add_tensor(hf_to_gguf_name(name), np.ascontiguousarray(a, dtype=np.float32))
        else:
            w.add_tensor(hf_to_gguf_name(name), gguf.quantize(np.ascontiguousarray(a), qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def prompts():
    rng = np.random.default_rng(4321)
    return [[int(x) for x in rng.integers(0, VOCAB, size=T_PROMPT)] for _ in range(2)]


def load(d, dtype):
    return AutoModelForCausalLM.from_pretrained(d, gguf_file="model.gguf", dtype=dtype,
                                                attn_implementation="eager").eval()


def make_variant(name, spec, ps):
    mat_type, emb_type, tied, align, comment = spec
    d = os.path.join(OUT, name)
    for seed in range(1, 50):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        cfg = LlamaConfig(**SHAPE, tie_word_embeddings=tied)
        model = LlamaForCausalLM(cfg).float().eval()
        randomize(model, gen)
        if tied:
            model.tie_weights()
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        norm_type = Q.BF16 if name == "gguf_q4_1" else Q.F32
        write_gguf(os.path.join(d, "model.gguf"), model, mat_type, emb_type, tied, align, norm_type)
        ref = load(d, torch.float32)
        assert ref.config.tie_word_embeddings == tied
        # transformers' own reading of the file must give back the HF weights
        # up to quantisation: this checks the permutation round trip.
        sd, sd0 = ref.state_dict(), model.state_dict()
        for k in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"):
            err = float((sd[k] - sd0[k]).abs().max()) / float(sd0[k].abs().max())
            assert err < 0.2, f"{name}: {k} differs by {err} after the GGUF round trip"
        m64 = load(d, torch.float64)
        conts64 = [greedy(m64, p, N_GEN) for p in ps]
        conts = [greedy(ref, p, N_GEN) for p in ps]
        lg = torch.stack([logits_of(ref, p) for p in ps])
        scale = float(lg.abs().max())
        ok = all(c[0] == c64[0] for c, c64 in zip(conts, conts64))
        min_gap = min(c[1] for c in conts64)
        if ok and min_gap > 1e-3 * scale:
            break
        print(f"  {name}: seed {seed} has a near-tie (gap {min_gap:.2e}, scale {scale:.2f}); next seed")
    else:
        sys.exit(f"{name}: no seed without near-ties")
    lg.numpy().astype("<f4").tofile(os.path.join(d, "logits.f32"))
    with open(os.path.join(d, "golden.txt"), "w") as f:
        f.write("lukv-golden 1\n")
        f.write(f"# GGUF {comment}\n")
        f.write(f"# transformers {transformers.__version__}, torch {torch.__version__}, gguf "
                f"{importlib.metadata.version('gguf')}, seed {seed}, "
                "loaded with from_pretrained(gguf_file=), f32, eager attention\n")
        f.write(f"vocab {VOCAB}\nprompts {len(ps)}\nprompt_len {T_PROMPT}\ngenerate {N_GEN}\n")
        f.write(f"logits logits.f32 {len(ps)} {T_PROMPT} {VOCAB}\n")
        f.write(f"max_abs_logit {scale:.9g}\nmin_greedy_gap {min_gap:.9g}\n")
        for i, (p, c) in enumerate(zip(ps, conts)):
            f.write(f"prompt {i} " + " ".join(map(str, p)) + "\n")
            f.write(f"greedy {i} " + " ".join(map(str, c[0])) + "\n")
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print(f"{name:12s} {size / 1024:6.1f} KB  seed {seed}  scale {scale:.2f}  gap {min_gap:.3g}")
    return size


def make_dequant():
    d = os.path.join(OUT, "gguf_dequant")
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    rng = np.random.default_rng(77)
    w = gguf.GGUFWriter(os.path.join(d, "blocks.gguf"), "lukv-dequant-test")
    n_el = 256  # 8 blocks of 32
    for qt in (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1):
        blk, size = gguf.GGML_QUANT_SIZES[qt]
        raw = rng.integers(0, 256, size=(n_el // blk) * size, dtype=np.uint8)
        if qt in (Q.Q8_0, Q.Q4_0, Q.Q4_1):
            # half the blocks with ordinary scales (|d| ~ 1e-3 .. 1), the rest raw bits
            for b in range(0, n_el // blk, 2):
                sc = (rng.uniform(1e-3, 1.0, size=2) * rng.choice([-1, 1], size=2)).astype(np.float16)
                nsc = 2 if qt == Q.Q4_1 else 1
                raw[b * size:b * size + 2 * nsc] = sc[:nsc].view(np.uint8)
        exp = gguf.dequantize(raw, qt).reshape(-1).astype(np.float32)
        w.add_tensor(f"raw.{qt.name}", raw.reshape(1, -1), raw_dtype=qt)
        assert exp.shape == (n_el,), (qt, exp.shape)
        w.add_tensor(f"expect.{qt.name}", exp)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = gguf.GGUFReader(os.path.join(d, "blocks.gguf"))
    for t in r.tensors:
        assert int(t.n_elements) == n_el, (t.name, t.n_elements)
    size = os.path.getsize(os.path.join(d, "blocks.gguf"))
    print(f"gguf_dequant {size / 1024:6.1f} KB")
    return size


def main():
    ps = prompts()
    total = make_dequant()
    for name, spec in VARIANTS.items():
        total += make_variant(name, spec, ps)
    print(f"total {total / 1024:.1f} KB")


if __name__ == "__main__":
    main()
