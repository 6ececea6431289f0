#!/usr/bin/env python3
"""Train lukv-tiny, the byte-level Llama model organism, and save it as a
Hugging Face LlamaForCausalLM directory.

    python3 tools/organism/train.py --corpus build-organism/corpus --out OUTDIR
    python3 tools/organism/train.py --smoke --corpus build-organism/corpus --out /tmp/smoke

Default run (one H100, must end within 8 minutes of wall time): 6 layers,
d_model 256, 8 query heads / 2 KV heads of dim 32, SwiGLU 704, RoPE theta 1e4,
context 4096, vocabulary 264 (bytes 0..255, BOS 256, EOS 257, 258..263
unused padding so the head GEMM is a multiple of 8), untied embeddings,
~4.37 M parameters. bf16 autocast, torch.compile (per decoder layer), SDPA
with enable_gqa. AdamW lr 3e-3, 200 warm-up steps, cosine to 10% over the
training budget, 64K tokens a step.

Training mixture (the recipe of run 2 in shared/notes/organism-training.md,
without its length curriculum): every step draws its sequence length from
{512, 1024, 2048, 4096} with fixed weights, in every phase of the run; 60% of
the sequences are RULER-style retrieval sequences (tasks.py: single needle,
several keys, several values, variable tracking, a question for many keys),
whose answer bytes weigh x20 in the loss; the rest is natural text.

The run is budgeted by time: progress = max(step / max_steps, elapsed /
train_seconds) drives the learning-rate schedule and the run stops at 1, so it
ends in time whatever the GPU's speed; train_seconds is cut further if the
start-up (imports, compile) ate into the deadline. Data are deterministic
(step s of run seed r always gets SeedSequence([1, r, s])); the number of
steps reached depends on the GPU speed and is logged.

Writes to OUTDIR: config.json, model.safetensors (bf16, HF names),
train_log.txt, train_summary.json (steps, tokens, held-out bits/byte, a quick
retrieval probe, the HF logits check).
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

T_START = time.time()

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks  # noqa: E402

PROBE_DOMAIN = 3  # train.py's end-of-run probe: SeedSequence([3, context, keys, trial])


# ---- model ------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        # same order of operations as transformers' LlamaRMSNorm
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.nh, self.nkv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        d = c["hidden_size"]
        self.q_proj = nn.Linear(d, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        # RoPE, HF rotate-half convention (cos/sin: [T, hd], halves repeated)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if SDPA_GQA:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:  # torch < 2.5
            r = self.nh // self.nkv
            y = F.scaled_dot_product_attention(q, k.repeat_interleave(r, 1), v.repeat_interleave(r, 1),
                                               is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.nh * self.hd))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class LlamaLM(nn.Module):
    """Parameter names equal transformers' LlamaForCausalLM state dict."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Decoder(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        hd = c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        self.register_buffer("inv_freq", inv, persistent=False)
        std = 0.02
        for n, p in self.named_parameters():
            if p.dim() == 2:
                s = std / math.sqrt(2 * c["num_hidden_layers"]) if n.endswith(("o_proj.weight", "down_proj.weight")) else std
                nn.init.normal_(p, 0.0, s)

    def rope(self, T, device):
        pos = torch.arange(T, device=device, dtype=torch.float32)
        f = torch.outer(pos, self.inv_freq.to(device))
        emb = torch.cat((f, f), dim=-1)
        return emb.cos(), emb.sin()

    def hidden(self, idx, layers=None):
        """layers: callables replacing self.model.layers (compiled ones)."""
        cos, sin = self.rope(idx.shape[1], idx.device)
        x = self.model.embed_tokens(idx)
        for layer in layers or self.model.layers:
            x = layer(x, cos, sin)
        return self.model.norm(x)

    def forward(self, idx):
        return self.lm_head(self.hidden(idx))


def loss_stats(logits, tgt, w):
    """Weighted CE and a few sums for the log. logits [B,T,V], tgt/w [B,T]."""
    ce = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), reduction="none").view_as(w)
    loss = (ce * w).sum() / w.sum()
    ans = (w > 1.0).float()
    plain = (w == 1.0).float()
    hit = (logits.argmax(-1) == tgt).float()
    stats = torch.stack([(ce * plain).sum(), plain.sum(), (ce * ans).sum(), ans.sum(), (hit * ans).sum()])
    return loss, stats.detach()


def hf_config(c):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c["vocab_size"],
        "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"],
        "num_hidden_layers": c["num_hidden_layers"],
        "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"],
        "head_dim": c["head_dim"],
        "hidden_act": "silu",
        "max_position_embeddings": c["max_position_embeddings"],
        "rms_norm_eps": c["rms_norm_eps"],
        "rope_theta": c["rope_theta"],
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "tie_word_embeddings": False,
        "bos_token_id": tasks.BOS,
        "eos_token_id": tasks.EOS,
        "pad_token_id": None,
        "use_cache": True,
        "torch_dtype": "bfloat16",
        "lukv_tokenizer": "bytes: ids 0..255 are the bytes, 256 BOS, 257 EOS, 258..263 unused",
    }


def write_safetensors(sd, path):
    """Minimal safetensors writer (bf16 only), used when the safetensors
    package is missing: 8-byte little-endian header size, JSON header, data."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for k in sorted(sd):
        t = sd[k]
        assert t.dtype == torch.bfloat16
        b = t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
        header[k] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def save_model(model, out):
    sd = {k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in model.state_dict().items()}
    path = os.path.join(out, "model.safetensors")
    try:
        from safetensors.torch import save_file
    except ImportError:
        write_safetensors(sd, path + ".tmp")
    else:
        save_file(sd, path + ".tmp", metadata={"format": "pt"})
    os.replace(path + ".tmp", path)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf_config(model.c), f, indent=2)
        f.write("\n")


def verify_hf(model, out, device, T, log):
    """Load OUTDIR with transformers and compare its logits with ours, both in
    fp32 from the saved bf16 weights. Returns the max |difference|."""
    from transformers import LlamaForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False  # a true fp32 comparison
    torch.backends.cudnn.allow_tf32 = False

    # bf16 -> fp32 is exact; .float() avoids the dtype/torch_dtype rename
    hf = LlamaForCausalLM.from_pretrained(out, attn_implementation="eager").float().to(device).eval()
    ref = LlamaLM(model.c).to(device)
    ref.load_state_dict({k: v.detach().to(torch.bfloat16).float() for k, v in model.state_dict().items()})
    ref.eval()
    g = torch.Generator().manual_seed(7)
    idx = torch.randint(0, 258, (2, T), generator=g).to(device)
    idx[:, 0] = tasks.BOS
    with torch.no_grad():
        a = ref(idx).float()
        b = hf(input_ids=idx).logits.float()
    diff = (a - b).abs().max().item()
    log("HF check: transformers LlamaForCausalLM vs training model, fp32, T=%d: max |dlogit| = %.3g "
        "(logit scale %.3g)" % (T, diff, a.abs().max().item()))
    del hf
    return diff


# ---- data -----------------------------------------------------------------


class Steps(torch.utils.data.IterableDataset):
    """Yields whole batches: step s -> (tokens [B, L+1] int64, weights [B, L+1]).
    Worker w of W makes steps w, w+W, ...; the DataLoader returns them in step
    order, so the stream does not depend on the number of workers."""

    def __init__(self, train_path, a, first_step=0):
        self.path, self.a, self.first = train_path, a, first_step

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        text = np.memmap(self.path, dtype=np.uint8, mode="r")
        b = tasks.Builder(text)
        lens, p = self.a.lengths, np.asarray(self.a.length_weights, dtype=np.float64)
        p = p / p.sum()
        s = self.first + wid
        while True:
            rng = tasks.rng_for(tasks.TRAIN_DOMAIN, self.a.seed, s)
            L = int(lens[rng.choice(len(lens), p=p)])
            B = max(1, self.a.tokens_per_step // L)
            toks, ws = [], []
            for _ in range(B):  # L + 1 tokens: inputs and targets are L long
                t, w = b.train_sequence(rng, L + 1, self.a.p_retrieval)
                toks.append(t)
                ws.append(w)
            yield torch.from_numpy(np.stack(toks)), torch.from_numpy(np.stack(ws))
            s += nw


# ---- evaluation -------------------------------------------------------------


@torch.no_grad()
def heldout_bpb(model, heldout, T, device, amp, max_windows=None, batch=8):
    """Bits per byte on non-overlapping windows of held-out text (BOS + T-1
    bytes each); BOS is never a target."""
    n = (len(heldout) - 1) // (T - 1)
    if max_windows:
        n = min(n, max_windows)
    tot, cnt = 0.0, 0
    for i in range(0, n, batch):
        rows = []
        for j in range(i, min(n, i + batch)):
            rows.append(np.concatenate([[tasks.BOS], heldout[j * (T - 1):(j + 1) * (T - 1)]]))
        x = torch.from_numpy(np.stack(rows).astype(np.int64)).to(device)
        with amp():
            logits = model(x[:, :-1])
        ce = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten(), reduction="sum")
        tot += ce.item()
        cnt += x[:, 1:].numel()
    return tot / cnt / math.log(2)


@torch.no_grad()
def probe(model, heldout, contexts, trials, device, amp):
    """Quick end-of-run retrieval probe (not the reported number, which is
    needle_eval.py's): exact match of all 7 answer digits under teacher
    forcing, which equals greedy decoding's exact match. Seeds: PROBE_DOMAIN."""
    b = tasks.Builder(heldout)
    res = {}
    for ctx in contexts:
        for nk in (1, 4):
            rows, ans = [], []
            for t in range(trials):
                tok, a = b.eval_prompt(tasks.rng_for(PROBE_DOMAIN, ctx, nk, t), ctx - 8, nk)
                full = np.concatenate([tok, np.frombuffer(a.encode(), dtype=np.uint8).astype(np.int64)])
                rows.append(full)
                ans.append(len(a))
            x = torch.from_numpy(np.stack(rows)).to(device)
            hits = 0
            for i in range(0, trials, 8):
                xb = x[i:i + 8]
                with amp():
                    lg = model(xb[:, :-1])
                k = ans[0]
                pred = lg[:, -k:].argmax(-1)
                hits += (pred == xb[:, -k:]).all(-1).sum().item()
            res["%d/%dkey" % (ctx, nk)] = hits / trials
    return res


# ---- main -------------------------------------------------------------------


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="build-organism/corpus", help="folder with train.bin, heldout.bin")
    ap.add_argument("--out", required=True, help="output model folder")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU config, a few steps, end-to-end test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--ffn", type=int, default=704)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--lengths", default="512,1024,2048,4096")
    ap.add_argument("--length-weights", default="0.2,0.25,0.25,0.3")
    ap.add_argument("--p-retrieval", type=float, default=0.6)
    ap.add_argument("--tokens-per-step", type=int, default=65536)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--train-seconds", type=float, default=330.0)
    ap.add_argument("--deadline", type=float, default=450.0,
                    help="seconds from process start by which everything must be written")
    ap.add_argument("--reserve", type=float, default=50.0,
                    help="seconds kept after training for eval, probe, save and HF check")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--compile", dest="compile", action="store_true", default=None)
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--probe-trials", type=int, default=50)
    ap.add_argument("--final-eval-windows", type=int, default=0, help="0: every window of heldout.bin")
    ap.add_argument("--no-hf-check", action="store_true")
    ap.add_argument("--checkpoint-seconds", type=float, default=90.0,
                    help="also save the model every this many seconds of training (0: never)")
    a = ap.parse_args()
    if a.smoke:
        a.layers, a.d_model, a.ffn, a.heads, a.kv_heads, a.head_dim = 2, 64, 176, 4, 2, 16
        a.ctx, a.lengths, a.length_weights = 512, "128,256,512", "1,1,1"
        a.tokens_per_step, a.max_steps, a.warmup, a.train_seconds = 2048, 40, 5, 120.0
        a.rope_theta = 500.0  # not the default, so the HF check proves rope_theta is honoured
        a.log_every, a.eval_every, a.probe_trials, a.final_eval_windows = 5, 20, 4, 64
        a.deadline, a.reserve = 1e9, 0.0
        if a.workers is None:
            a.workers = 1
        if a.compile is None:
            a.compile = False
    a.lengths = [int(x) for x in a.lengths.split(",")]
    a.length_weights = [float(x) for x in a.length_weights.split(",")]
    assert len(a.lengths) == len(a.length_weights) and max(a.lengths) <= a.ctx
    return a


def main():
    a = parse()
    os.makedirs(a.out, exist_ok=True)
    logf = open(os.path.join(a.out, "train_log.txt"), "w")

    def log(msg):
        line = "[%7.1fs] %s" % (time.time() - T_START, msg)
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    global SDPA_GQA
    if SDPA_GQA:
        # preflight: on the GPU, enable_gqa must run on the flash kernel; a
        # fallback to the math kernel would materialise 4096 x 4096 scores
        # (far too slow, and out of memory). Else repeat the KV heads.
        try:
            q = torch.randn(1, a.heads, 256, a.head_dim, device=dev, dtype=torch.bfloat16 if cuda else torch.float32)
            kv = q[:, :a.kv_heads].contiguous()
            if cuda:
                from torch.nn.attention import SDPBackend, sdpa_kernel

                with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                    F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
            else:
                F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
        except Exception as e:
            log("SDPA enable_gqa unavailable on the flash kernel (%r): repeating KV heads instead" % (e,))
            SDPA_GQA = False
    log("attention: SDPA %s" % ("with enable_gqa" if SDPA_GQA else "with KV heads repeated"))
    if a.compile is None:
        a.compile = cuda
    if a.workers is None:
        a.workers = max(1, min(8, (os.cpu_count() or 2) - 2))
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    train_path = os.path.join(a.corpus, "train.bin")
    heldout = np.fromfile(os.path.join(a.corpus, "heldout.bin"), dtype=np.uint8)
    # What was trained on, read from the files themselves (the manifest may not
    # travel with them to the GPU machine).
    man = {}
    for split in ("train", "heldout"):
        h = hashlib.sha256()
        with open(os.path.join(a.corpus, split + ".bin"), "rb") as f:
            for blk in iter(lambda: f.read(1 << 22), b""):
                h.update(blk)
        man[split] = {"bytes": os.path.getsize(os.path.join(a.corpus, split + ".bin")),
                      "sha256": h.hexdigest()}

    c = {"vocab_size": tasks.VOCAB, "hidden_size": a.d_model, "intermediate_size": a.ffn,
         "num_hidden_layers": a.layers, "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
         "head_dim": a.head_dim, "max_position_embeddings": a.ctx, "rms_norm_eps": 1e-5,
         "rope_theta": a.rope_theta}
    model = LlamaLM(c).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    log("torch %s, device %s, %d params, config %s" % (torch.__version__, dev, n_params, json.dumps(c)))
    log("args %s" % json.dumps(vars(a)))
    log("corpus %s" % json.dumps(man))

    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed_tokens" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if cuda else {}))

    if cuda:
        amp = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    else:
        import contextlib

        amp = contextlib.nullcontext  # fp32 on CPU

    step_fn_loss, layers = loss_stats, None
    if a.compile:
        # the decoder layer compiles once (all layers share the graph) and the
        # head + loss once: much quicker than compiling the whole model. Only
        # training steps use them; evaluation runs eager, so that its shapes
        # never trigger a recompile inside the timed run.
        import torch._dynamo.config as dynamo_config

        for name in ("cache_size_limit", "recompile_limit"):  # never fall back to eager silently
            if hasattr(dynamo_config, name):
                setattr(dynamo_config, name, 64)
        # dynamic=True: one graph serves every sequence length (no recompile
        # per length; the four lengths would otherwise cost two compiles each)
        layers = [torch.compile(layer, dynamic=True) for layer in model.model.layers]
        step_fn_loss = torch.compile(loss_stats, dynamic=True)

    def train_step(x, y, w):
        with amp():
            h = model.hidden(x, layers)
            logits = model.lm_head(h)
            loss, st = step_fn_loss(logits, y, w)
        loss.backward()
        return loss.detach(), st

    # compile (and warm up) every sequence shape before the clock starts; if
    # compiling fails, train eager rather than lose the run
    if a.compile:
        t0 = time.time()
        try:
            for L in sorted(set(a.lengths)):
                B = max(1, a.tokens_per_step // L)
                # same dtypes, shapes and strides as the real batches
                x = torch.randint(0, 256, (B, L + 1), device=dev)
                w = torch.ones(B, L + 1, device=dev)
                train_step(x[:, :-1], x[:, 1:], w[:, 1:])
            if cuda:
                torch.cuda.synchronize()
        except Exception as e:
            log("WARNING: torch.compile failed (%r); training eager" % (e,))
            step_fn_loss, layers = loss_stats, None
        model.zero_grad(set_to_none=True)
        from torch._dynamo.utils import counters

        log("compiled and warmed up %d shapes in %.1fs (dynamo: %s)" % (
            len(set(a.lengths)), time.time() - t0, json.dumps({k: dict(v) for k, v in counters.items() if k == "stats"})))

    budget = max(10.0, min(a.train_seconds, a.deadline - a.reserve - (time.time() - T_START)))
    log("training budget %.1fs (deadline %.0fs from start, reserve %.0fs)" % (budget, a.deadline, a.reserve))

    dl = torch.utils.data.DataLoader(Steps(train_path, a), batch_size=None, num_workers=a.workers,
                                     pin_memory=cuda, prefetch_factor=4 if a.workers > 0 else None,
                                     persistent_workers=False)
    model.train()
    t_train = time.time()
    step, tokens, done = 0, 0, False
    acc = torch.zeros(5, device=dev)
    loss_acc = torch.zeros((), device=dev)
    n_acc = 0
    lr = a.lr
    history = []
    last_ckpt = 0.0
    for xb, wb in dl:
        xb = xb.to(dev, non_blocking=True)
        wb = wb.to(dev, non_blocking=True)
        elapsed = time.time() - t_train
        prog = max(step / a.max_steps, elapsed / budget)
        if prog >= 1.0:
            done = True
            break
        warm = min(1.0, (step + 1) / a.warmup)
        lr = a.lr * warm * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * prog)))
        for g in opt.param_groups:
            g["lr"] = lr
        loss, st = train_step(xb[:, :-1], xb[:, 1:], wb[:, 1:])
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens += xb[:, 1:].numel()
        acc += st
        loss_acc += loss
        n_acc += 1
        if step % a.log_every == 0:
            s = acc.tolist()
            el = time.time() - t_train
            rec = {"step": step, "tokens": tokens, "elapsed": round(el, 1), "lr": lr,
                   "loss": loss_acc.item() / n_acc, "text_bpb": s[0] / max(1, s[1]) / math.log(2),
                   "answer_ce": s[2] / max(1, s[3]), "answer_acc": s[4] / max(1, s[3])}
            history.append(rec)
            log("step %6d  tok %6.1fM  loss %.4f  text %.3f b/B  answer ce %.3f acc %.3f  lr %.2e  %.0f tok/s"
                % (step, tokens / 1e6, rec["loss"], rec["text_bpb"], rec["answer_ce"], rec["answer_acc"],
                   lr, tokens / max(el, 1e-9)))
            acc.zero_()
            loss_acc.zero_()
            n_acc = 0
            if a.checkpoint_seconds and el - last_ckpt >= a.checkpoint_seconds:
                save_model(model, a.out)  # so that a killed run still leaves a model
                last_ckpt = el
                log("checkpoint saved (step %d)" % step)
        if step % a.eval_every == 0:
            model.eval()
            bpb = heldout_bpb(model, heldout, a.ctx, dev, amp, max_windows=16)
            model.train()
            log("step %6d  held-out %.4f bits/byte (16 windows of %d)" % (step, bpb, a.ctx))
    train_time = time.time() - t_train
    del dl
    log("training done: %d steps, %.1fM tokens, %.1fs (%s)" % (step, tokens / 1e6, train_time,
                                                               "budget reached" if done else "data ended"))

    model.eval()
    bpb = heldout_bpb(model, heldout, a.ctx, dev, amp, max_windows=a.final_eval_windows or None)
    log("final held-out: %.4f bits/byte (%s %d-byte windows of heldout.bin)"
        % (bpb, a.final_eval_windows or "all", a.ctx - 1))
    save_model(model, a.out)
    log("saved %s (config.json, model.safetensors)" % a.out)

    ctxs = [x for x in (1024, 2048, 4096) if x <= a.ctx] or [a.ctx]
    pr = probe(model, heldout, ctxs, a.probe_trials, dev, amp)
    log("probe (teacher-forced exact match, %d trials, seeds [3,ctx,keys,trial]): %s" % (a.probe_trials, json.dumps(pr)))

    hf_diff = None
    if not a.no_hf_check:
        try:
            hf_diff = verify_hf(model, a.out, dev, a.ctx if cuda else min(a.ctx, 512), log)
        except Exception as e:  # the model is saved already; report and go on
            log("HF check failed: %r" % (e,))
    summary = {"config": hf_config(c), "params": n_params, "args": vars(a), "steps": step, "tokens": tokens,
               "train_seconds": round(train_time, 1), "heldout_bits_per_byte": bpb, "probe": pr,
               "hf_max_abs_logit_diff": hf_diff, "corpus": man, "torch": torch.__version__,
               "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
               "wall_seconds": round(time.time() - T_START, 1), "history": history}
    with open(os.path.join(a.out, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    log("wrote train_summary.json; wall %.1fs" % (time.time() - T_START))
    if hf_diff is not None and hf_diff > 1e-3:
        log("ERROR: HF logits differ by %.3g > 1e-3" % hf_diff)
        sys.exit(1)


SDPA_GQA = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)

if __name__ == "__main__":
    main()
