#!/usr/bin/env python3
"""Independent reference for lukv-profile: per-head loss curves from HF eager attention.

This computes the profile.h5 that `lukv-profile` computes (DESIGN §3 "Method",
docs/formats.md §3), but with nothing in common with the C code: the model is
run by Hugging Face transformers in float64 with `attn_implementation="eager"`
and `output_attentions=True`, and every quantity below is evaluated directly
from the full attention matrices. It is slow and memory-hungry (it holds
L x Hq x N x N probabilities, N = T + F): meant for tiny models and short
contexts, as the proof that lukv-profile (CPU and CUDA) is right, not as a
profiler.

Usage (from the repository root, torch + transformers + h5py in .venv):

  .venv/bin/python tools/reference_profile.py --model DIR --corpus CORPUS.h5 \\
      --context-len T --future-len F [--samples S] [--sink 4] [--window 32] \\
      [--pool 7] [--utility max|sum] [--grid 256] [--scorers snapkv,keydiff] \\
      [--mode teacher] [--model-name NAME] [--dump FIRST_SAMPLE.npz] -o PROFILE.h5

  .venv/bin/python tools/reference_profile.py make-corpus --model DIR \\
      --samples S --length N [--seed 0] -o CORPUS.h5
      (S samples of N token ids drawn uniformly from [0, vocab_size) by
      numpy.random.default_rng(seed).integers; the honest input for the
      random-weight golden models)

Fixtures (tests/fixtures/), produced exactly by:

  .venv/bin/python tools/reference_profile.py make-corpus \\
      --model tests/golden/llama3_rope --samples 2 --length 208 --seed 0 \\
      -o tests/fixtures/ref-corpus.h5
  .venv/bin/python tools/reference_profile.py --model tests/golden/llama3_rope \\
      --corpus tests/fixtures/ref-corpus.h5 --context-len 160 --future-len 48 \\
      --samples 2 --sink 4 --window 16 --pool 7 --grid 32 --utility max \\
      --scorers snapkv,keydiff --dump tests/fixtures/ref-dump.npz \\
      -o tests/fixtures/ref-profile.h5
  .venv/bin/python tools/reference_profile.py --model tests/golden/llama3_rope \\
      --corpus tests/fixtures/ref-corpus.h5 --context-len 160 --future-len 48 \\
      --samples 2 --sink 4 --window 16 --pool 7 --grid 32 --utility sum \\
      --scorers snapkv,keydiff -o tests/fixtures/ref-profile-sum.h5

Definitions (exact; the C profiler must compute the same)
---------------------------------------------------------
Per sample, teacher mode: the sample's tokens x[0..n). Context length
T_s = min(T, n - F) (the future is always F tokens; the context shrinks for a
short sample, and a sample with T_s <= sink + window is an error). One forward
pass over x[0 .. T_s + F), positions 0..T_s+F-1, no BOS added (the corpus ids
are used as they are). Context tokens j < T_s; future rows k in [T_s, T_s+F).
Per layer l, query head q (Hq of them), KV head h(q) = q // (Hq / Hkv), head
dim d, hidden size D:

  A[q,k,j]   attention probability of row k on key j (output_attentions):
             softmax over all keys row k sees (causal, j <= k), scale d^-1/2.
  vnorm[q,j] = || W_O[:, q*d:(q+1)*d] @ v[j, h(q)] ||_2,  j < T_s,
             W_O = o_proj.weight [D, Hq*d], v = v_proj output (V has no RoPE);
             then divided by  sum_{q, j<T_s} vnorm  (so it sums to 1 per layer).
  u[h,j]     = max_{q in group(h)} max_{k in [T_s, T_s+F)} A[q,k,j] * vnorm[q,j]
             (--utility max), or with sum_k instead of max_k (--utility sum;
             max over q, sum over k). F = 0 gives u = 0.
  snapkv     window rows i in [T_s - w, T_s): raw[q,j] = sum_i A[q,i,j] for all
             j < T_s (rows i < T_s see only context keys, so this equals a
             context-only prefill); max-pool along j with odd kernel p and same
             padding restricted to the context:
               pooled[q,j] = max{ raw[q,j'] : j' in [j - p//2, j + p//2] ∩ [0, T_s) }
             (sink and window positions take part in the pooling); then the
             mean over the group's query heads: score[h,j] = mean_{q in h} pooled[q,j].
  keydiff    keys post-RoPE, as stored in the KV cache: K[j,h,:] (the k_proj
             output with the model's own rotary embedding applied);
             khat[j,h] = K[j,h]/||K[j,h]||  (0 if the norm is 0);
             mean[h]   = (1/T_s) sum_{j<T_s} khat[j,h]   (all context tokens,
             sink and window included);
             score[h,j] = -(khat[j,h] . mean[h]) / ||mean[h]||  (= -cos; 0 if
             ||mean|| = 0).
  mid tokens j in [s, T_s - w), n_mid = T_s - s - w.
  ranking    order = stable sort of the mid tokens by -score (highest score
             first, ties: lower j first); the oracle ranks by u itself (ties
             cannot change its curve).
  grid       g = 0..G:  m_g = clamp(floor(g*T_s/G + 1/2) - s - w, 0, n_mid),
             evaluated in exact integer arithmetic as
               m_g = clamp((2*g*T_s + G) div (2*G) - s - w, 0, n_mid)
             (= C lround of the exact g/G*T_s: halves round up). Use the
             integer form in C too: (double)g/G*T_s can land just below a .5
             and round the other way when G is not a power of two.
  loss       curve[g] = sum of u[h,j] over the mid tokens NOT among the top
             m_g of the ranking = total_mid - prefix(m_g). Here every such sum
             is evaluated with math.fsum (correctly rounded float64), so
             curve[0] == utility_total exactly, curve[G] == 0 exactly,
             non-increasing in g and oracle <= scorer pointwise hold exactly,
             and still hold after the final rounding to float32.
  utility_total[s,l,h] = sum over mid j of u[h,j]  (= curve[..., 0]).

Precision: weights are bf16/f16/f32 on disk, converted exactly to float64
(model.double()). Two parts of the HF forward stay in float32 whatever the
model dtype: eager attention's softmax (softmax(..., dtype=float32)) and the
rotary tables (cos/sin from float32 positions * float32 inv_freq, abs error
~1e-5 rad at position 200). Both are ~1e-6 relative effects, far under the
1e-3 tolerance; the script cross-checks output_attentions against its own
float64 softmax of the hooked post-RoPE q.k to 1e-5 absolute, which also
proves the post-RoPE keys used by keydiff are the ones attention used.

Comparing with the C profiler: a scorer curve is a step function of a ranking,
so two nearly tied scores that swap order under f32/bf16 noise move one
token's utility between grid points. Compare the dump's scores stage by stage
(vnorm, u, snapkv, keydiff) with a relative tolerance, the oracle curves and
utility_total with 1e-3 relative, and scorer curves with 1e-3 relative plus an
absolute slack for points near zero (or by applying the reference ranking).
SnapKV scores have many EXACT ties (max-pooling copies one value to its
neighbours; when every query head of the group shares the plateau, the group
means are bitwise equal), and in the fixture such ties straddle 14-16 of the
33 cut points m_g per head: the snapkv curves are only reproducible with the
tie rule above (lower j first). Measured on the fixture: a float32 run of the
same HF model matches these curves to 1.5e-6 relative; rounding only q, k, v
to bf16 (a bf16 KV cache) already moves the oracle by up to 0.9% relative and
swaps scorer ranks (up to 6% of a head's utility_total), so a bf16 CUDA path
cannot be held to 1e-3 relative against this reference.

Output: profile.h5 (docs/formats.md §3), written to OUT.tmp then renamed.
model_hash = full lowercase hex sha256 of the bytes of the model directory's
*.safetensors files, concatenated in sorted file-name order (one file: just
sha256 of model.safetensors). model_name defaults to the model directory's
base name.

--dump FILE.npz keeps the first sample's intermediate arrays (float64 unless
noted; L layers, Hq query heads, H KV heads, T = T_0 of sample 0, N = T+F):
  tokens int32 [N]; m_grid int64 [G+1]; params: context_len, future_len,
  sink, window, pool_kernel, grid (int64 scalars), utility (str);
  keys [L,T,H,d] post-RoPE; values [L,T,H,d]; lse [L,Hq,N] natural-log
  log-sum-exp of each row's scaled scores (f64 recomputation);
  vnorm [L,Hq,T] (normalised); u_max, u_sum [L,H,T] (both utilities);
  snapkv_raw [L,Hq,T] (window sum, before pooling); snapkv_pooled [L,Hq,T];
  snapkv [L,H,T]; keydiff [L,H,T]; utility_total [L,H]; curve_<name>
  [L,H,G+1] float64 before the float32 rounding, for oracle and each scorer.
"""
import argparse
import glob
import hashlib
import math
import os
import sys

import numpy as np

CREATED_BY = "tools/reference_profile.py"
SCORERS = ("snapkv", "keydiff")


def die(msg):
    print("reference_profile.py: " + msg, file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- files


def model_hash(model_dir):
    files = sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))
    if not files:
        die("%s: no *.safetensors file" % model_dir)
    h = hashlib.sha256()
    for p in files:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def read_corpus(path):
    import h5py
    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != "lukv-corpus":
            die("%s: format is %r but expected \"lukv-corpus\"" % (path, fmt))
        if int(f.attrs["format_version"]) != 1:
            die("%s: format_version %s, this script reads 1" % (path, f.attrs["format_version"]))
        tok = f["tokens"][()].astype(np.int64)
        off = f["offsets"][()].astype(np.int64)
        vocab = int(f.attrs["vocab_size"])
    assert off.ndim == 1 and len(off) >= 2 and off[0] == 0 and off[-1] == len(tok) and np.all(np.diff(off) >= 0)
    assert np.all((tok >= 0) & (tok < vocab))
    return [tok[off[i]:off[i + 1]] for i in range(len(off) - 1)], vocab


def write_h5_atomic(path, fill):
    import h5py
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            fill(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def make_corpus(args):
    import json
    with open(os.path.join(args.model, "config.json")) as f:
        vocab = int(json.load(f)["vocab_size"])
    rng = np.random.default_rng(args.seed)
    tokens = rng.integers(0, vocab, size=args.samples * args.length).astype(np.int32)
    offsets = (np.arange(args.samples + 1, dtype=np.int64) * args.length)

    def fill(f):
        f.attrs["format"] = "lukv-corpus"
        f.attrs["format_version"] = 1
        f.attrs["created_by"] = CREATED_BY + " make-corpus"
        f.attrs["tokenizer"] = "random-ids"
        f.attrs["vocab_size"] = vocab
        f.attrs["source"] = ("uniform random token ids: numpy default_rng(%d).integers(0, %d, size=%d*%d)"
                             % (args.seed, vocab, args.samples, args.length))
        f.create_dataset("tokens", data=tokens)
        f.create_dataset("offsets", data=offsets)

    write_h5_atomic(args.out, fill)
    print("%s: %d samples x %d tokens, vocab %d" % (args.out, args.samples, args.length, vocab), file=sys.stderr)


# ---------------------------------------------------------------- model


def load_model(model_dir):
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_grad_enabled(False)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64, attn_implementation="eager")
    model = model.double().eval()
    return model


def run_sample(model, ids):
    """One forward pass; per layer: A [Hq,N,N], q [N,Hq,d], k [N,Hkv,d] post-RoPE, v [N,Hkv,d], W_O [D,Hq*d]."""
    import torch
    cfg = model.config
    layers = model.model.layers
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    cap = [dict() for _ in layers]
    hooks = []
    for li, layer in enumerate(layers):
        at = layer.self_attn
        for name in ("q_proj", "k_proj", "v_proj"):
            def hook(mod, inp, out, li=li, name=name):
                cap[li][name] = out.detach().clone()
            hooks.append(getattr(at, name).register_forward_hook(hook))
    N = len(ids)
    x = torch.tensor(np.asarray(ids, dtype=np.int64)[None, :])
    pos = torch.arange(N)[None, :]
    try:
        out = model(input_ids=x, position_ids=pos, output_attentions=True, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    assert len(out.attentions) == len(layers)
    # Post-RoPE q, k exactly as the attention module forms them: the model's own
    # rotary tables and its module's apply_rotary_pos_emb.
    rope_mod = sys.modules[type(layers[0].self_attn).__module__]
    hs = torch.zeros(1, N, cfg.hidden_size, dtype=torch.float64)
    cos, sin = model.model.rotary_emb(hs, pos)
    res = []
    for li, layer in enumerate(layers):
        c = cap[li]
        q = c["q_proj"].view(1, N, -1, d).transpose(1, 2)
        k = c["k_proj"].view(1, N, -1, d).transpose(1, 2)
        q, k = rope_mod.apply_rotary_pos_emb(q, k, cos, sin)
        A = out.attentions[li][0].double().numpy()
        res.append(dict(
            A=A,
            q=q[0].transpose(0, 1).double().numpy(),
            k=k[0].transpose(0, 1).double().numpy(),
            v=c["v_proj"].view(N, -1, d).double().numpy(),
            W_O=layer.self_attn.o_proj.weight.detach().double().numpy(),
        ))
    return res


def check_attention(A, q, k, T, F):
    """output_attentions against our own float64 softmax; returns row LSE [Hq,N]."""
    N, Hq, d = q.shape
    Hkv = k.shape[1]
    grp = Hq // Hkv
    kk = np.repeat(k, grp, axis=1)  # [N,Hq,d]
    S = np.einsum("iqe,jqe->qij", q, kk) / math.sqrt(d)
    mask = np.tril(np.ones((N, N), dtype=bool))
    S = np.where(mask[None], S, -np.inf)
    mx = S.max(axis=-1, keepdims=True)
    P = np.exp(S - mx)
    Z = P.sum(axis=-1, keepdims=True)
    P /= Z
    lse = (mx + np.log(Z))[..., 0]
    err = np.abs(P - A).max()
    assert err < 1e-5, "output_attentions disagrees with f64 softmax of post-RoPE q.k: max abs %g" % err
    assert np.all(A[:, ~mask] == 0), "attention on future keys"
    assert np.allclose(A.sum(-1), 1.0, atol=1e-6), "attention rows do not sum to 1"
    return lse


# ---------------------------------------------------------------- method


def compute_vnorm(v, W_O, Hq, T):
    """vnorm [Hq,T], normalised to sum 1 over (q, j<T)."""
    N, Hkv, d = v.shape
    grp = Hq // Hkv
    D = W_O.shape[0]
    vn = np.empty((Hq, T))
    for q in range(Hq):
        Wq = W_O[:, q * d:(q + 1) * d]  # [D,d]
        vn[q] = np.linalg.norm(v[:T, q // grp, :] @ Wq.T, axis=1)  # [T]
    assert D == W_O.shape[0]
    tot = math.fsum(vn.ravel())
    assert tot > 0
    vn = vn / tot
    assert abs(math.fsum(vn.ravel()) - 1.0) < 1e-12
    return vn


def compute_utility(A, vn, Hkv, T, F, how):
    """u [Hkv,T] from future rows [T,T+F)."""
    Hq = A.shape[0]
    grp = Hq // Hkv
    fut = A[:, T:T + F, :T]  # [Hq,F,T]
    if F == 0:
        per_q = np.zeros((Hq, T))
    elif how == "max":
        per_q = (fut * vn[:, None, :]).max(axis=1)
    else:
        per_q = (fut * vn[:, None, :]).sum(axis=1)
    u = per_q.reshape(Hkv, grp, T).max(axis=1)
    assert np.all(u >= 0) and np.all(np.isfinite(u))
    return u


def maxpool_same(x, p):
    """x [..., T]: out[j] = max x[j'] for j' in [j-p//2, j+p//2] ∩ [0,T)."""
    assert p >= 1 and p % 2 == 1, "pool kernel must be odd"
    T = x.shape[-1]
    r = p // 2
    out = x.copy()
    for j in range(T):
        out[..., j] = x[..., max(0, j - r):min(T, j + r + 1)].max(axis=-1)
    return out


def score_snapkv(A, Hkv, T, w, p):
    Hq = A.shape[0]
    grp = Hq // Hkv
    raw = A[:, T - w:T, :T].sum(axis=1) if w > 0 else np.zeros((Hq, T))  # [Hq,T]
    pooled = maxpool_same(raw, p)
    return pooled.reshape(Hkv, grp, T).mean(axis=1), raw, pooled


def score_keydiff(k, T):
    kc = k[:T]  # [T,Hkv,d]
    nrm = np.linalg.norm(kc, axis=-1, keepdims=True)
    khat = np.divide(kc, nrm, out=np.zeros_like(kc), where=nrm > 0)
    mean = khat.mean(axis=0)  # [Hkv,d]
    mn = np.linalg.norm(mean, axis=-1)  # [Hkv]
    dot = np.einsum("jhe,he->hj", khat, mean)  # [Hkv,T]
    return np.where(mn[:, None] > 0, -dot / np.where(mn > 0, mn, 1.0)[:, None], 0.0)


def m_grid(T, G, s, w):
    n_mid = T - s - w
    return np.array([min(max((2 * g * T + G) // (2 * G) - s - w, 0), n_mid) for g in range(G + 1)], dtype=np.int64)


def curve(u_mid, r_mid, m):
    """loss at each m (float64, each a correctly rounded sum)."""
    order = np.argsort(-r_mid, kind="stable")
    us = u_mid[order]
    return np.array([math.fsum(us[mm:]) for mm in m])


# ---------------------------------------------------------------- driver


def profile(args):
    scorers = [x for x in args.scorers.split(",") if x]
    for sc in scorers:
        if sc not in SCORERS:
            die("unknown scorer %r (known: %s)" % (sc, ",".join(SCORERS)))
    if "oracle" in scorers or len(set(scorers)) != len(scorers) or not scorers:
        die("--scorers: give distinct scorers, at least one")
    if args.mode != "teacher":
        die("--mode %s: only teacher is implemented in the reference" % args.mode)
    if args.pool < 1 or args.pool % 2 == 0:
        die("--pool must be odd and >= 1")
    if args.grid < 1 or args.context_len < 1 or args.future_len < 0 or args.sink < 0 or args.window < 0:
        die("bad --grid/--context-len/--future-len/--sink/--window")

    import json
    with open(os.path.join(args.model, "config.json")) as f:
        cfgj = json.load(f)
    samples, vocab = read_corpus(args.corpus)
    if vocab > int(cfgj["vocab_size"]):
        die("corpus vocab_size %d exceeds the model's %d" % (vocab, cfgj["vocab_size"]))
    S = len(samples) if args.samples is None else args.samples
    if S < 1 or S > len(samples):
        die("--samples %d but the corpus holds %d" % (S, len(samples)))
    s, w, G, F = args.sink, args.window, args.grid, args.future_len

    model = load_model(args.model)
    cfg = model.config
    L = cfg.num_hidden_layers
    Hq = cfg.num_attention_heads
    Hkv = cfg.num_key_value_heads
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // Hq
    assert Hq % Hkv == 0

    names = ["oracle"] + scorers
    curves = {n: np.zeros((S, L, Hkv, G + 1), dtype=np.float32) for n in names}
    utot = np.zeros((S, L, Hkv), dtype=np.float32)
    Ts = np.zeros(S, dtype=np.int32)
    dump = {}

    for si in range(S):
        toks = samples[si]
        T = min(args.context_len, len(toks) - F)
        if T <= s + w:
            die("sample %d: %d tokens leave a context of %d <= sink + window = %d" % (si, len(toks), T, s + w))
        Ts[si] = T
        ids = toks[:T + F]
        n_mid = T - s - w
        m = m_grid(T, G, s, w)
        assert m[0] == 0 and m[G] == n_mid and np.all(np.diff(m) >= 0)
        per_layer = run_sample(model, ids)
        dumping = si == 0 and bool(args.dump)
        if dumping:
            dump = dict(tokens=np.asarray(ids, dtype=np.int32), m_grid=m, context_len=np.int64(T),
                        future_len=np.int64(F), sink=np.int64(s), window=np.int64(w),
                        pool_kernel=np.int64(args.pool), grid=np.int64(G), utility=np.array(args.utility),
                        **{k: [] for k in ("keys", "values", "lse", "vnorm", "u_max", "u_sum", "snapkv_raw",
                                           "snapkv_pooled", "snapkv", "keydiff", "utility_total")},
                        **{"curve_" + n: [] for n in names})
        for li, r in enumerate(per_layer):
            A = r["A"]
            assert A.shape == (Hq, T + F, T + F)
            lse = check_attention(A, r["q"], r["k"], T, F)
            vn = compute_vnorm(r["v"], r["W_O"], Hq, T)
            u = compute_utility(A, vn, Hkv, T, F, args.utility)
            snap, raw, pooled = score_snapkv(A, Hkv, T, w, args.pool)
            kd = score_keydiff(r["k"], T)
            rank = {"oracle": u, "snapkv": snap, "keydiff": kd}
            lc = {}
            for h in range(Hkv):
                u_mid = u[h, s:T - w]
                tot = math.fsum(u_mid)
                utot[si, li, h] = tot
                for n in names:
                    c = curve(u_mid, rank[n][h, s:T - w], m)
                    assert c[0] == tot and c[G] == 0.0, "curve ends"
                    assert np.all(np.diff(c) <= 0), "curve %s not non-increasing" % n
                    lc.setdefault(n, []).append(c)
                    curves[n][si, li, h] = c.astype(np.float32)
                for n in scorers:
                    assert np.all(lc["oracle"][h] <= lc[n][h] + 1e-12), "oracle above %s" % n
            if dumping:
                dump["keys"].append(r["k"][:T])
                dump["values"].append(r["v"][:T])
                dump["lse"].append(lse)
                dump["vnorm"].append(vn)
                dump["u_max"].append(compute_utility(A, vn, Hkv, T, F, "max"))
                dump["u_sum"].append(compute_utility(A, vn, Hkv, T, F, "sum"))
                dump["snapkv_raw"].append(raw)
                dump["snapkv_pooled"].append(pooled)
                dump["snapkv"].append(snap)
                dump["keydiff"].append(kd)
                dump["utility_total"].append(np.array([math.fsum(u[h, s:T - w]) for h in range(Hkv)]))
                for n in names:
                    dump["curve_" + n].append(np.stack(lc[n]))
        if dumping:
            dump = {k: (np.stack(v) if isinstance(v, list) else v) for k, v in dump.items()}
        print("sample %d/%d: T=%d F=%d n_mid=%d" % (si + 1, S, T, F, n_mid), file=sys.stderr)

    # The same invariants after the float32 rounding (monotone, so they survive).
    for n in names:
        c = curves[n]
        assert np.all(np.isfinite(c)) and np.all(c >= 0)
        assert np.all(np.diff(c, axis=-1) <= 0), "%s: float32 curve not non-increasing" % n
        assert np.all(c[..., 0] == utot) and np.all(c[..., G] == 0)
        if n != "oracle":
            assert np.all(curves["oracle"] <= c), "oracle above %s after float32 rounding" % n

    mname = args.model_name or os.path.basename(os.path.normpath(os.path.abspath(args.model)))
    mhash = model_hash(args.model)

    def fill(f):
        f.attrs["format"] = "lukv-profile"
        f.attrs["format_version"] = 1
        f.attrs["created_by"] = CREATED_BY
        f.attrs["model_name"] = mname
        f.attrs["model_hash"] = mhash
        f.attrs["n_layers"] = int(L)
        f.attrs["n_kv_heads"] = int(Hkv)
        f.attrs["n_q_heads"] = int(Hq)
        f.attrs["head_dim"] = int(d)
        f.attrs["mode"] = args.mode
        f.attrs["context_len"] = int(args.context_len)
        f.attrs["future_len"] = int(F)
        f.attrs["sink"] = int(s)
        f.attrs["window"] = int(w)
        f.attrs["pool_kernel"] = int(args.pool)
        f.attrs["utility"] = args.utility
        f.attrs["grid"] = int(G)
        f.create_dataset("sample_context_len", data=Ts)
        f.create_dataset("utility_total", data=utot)
        for n in names:
            f.create_dataset("curves/" + n, data=curves[n])

    write_h5_atomic(args.out, fill)
    print("%s: S=%d L=%d H=%d G=%d scorers %s, model_hash %s" % (args.out, S, L, Hkv, G, ",".join(scorers), mhash),
          file=sys.stderr)
    if args.dump:
        tmp = args.dump + ".tmp.npz"
        np.savez_compressed(tmp, **dump)
        os.replace(tmp, args.dump)
        print("%s: %d arrays, %d bytes" % (args.dump, len(dump), os.path.getsize(args.dump)), file=sys.stderr)


def main(argv):
    if argv and argv[0] == "make-corpus":
        ap = argparse.ArgumentParser(prog="reference_profile.py make-corpus",
                                     description="random-id corpus.h5 for a model's vocabulary")
        ap.add_argument("--model", required=True, help="HF model dir (vocab_size from config.json)")
        ap.add_argument("--samples", type=int, required=True)
        ap.add_argument("--length", type=int, required=True, help="tokens per sample")
        ap.add_argument("--seed", type=int, default=0)
        ap.add_argument("-o", "--out", required=True)
        make_corpus(ap.parse_args(argv[1:]))
        return
    ap = argparse.ArgumentParser(prog="reference_profile.py", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF model directory")
    ap.add_argument("--corpus", required=True, help="corpus.h5")
    ap.add_argument("--context-len", type=int, required=True, help="T")
    ap.add_argument("--future-len", type=int, required=True, help="F")
    ap.add_argument("--samples", type=int, default=None, help="first S samples (default: all)")
    ap.add_argument("--sink", type=int, default=4)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--pool", type=int, default=7)
    ap.add_argument("--utility", choices=("max", "sum"), default="max")
    ap.add_argument("--grid", type=int, default=256)
    ap.add_argument("--scorers", default="snapkv,keydiff")
    ap.add_argument("--mode", default="teacher")
    ap.add_argument("--model-name", default=None, help="default: the model directory's base name")
    ap.add_argument("--dump", default=None, help="FILE.npz: first sample's intermediate arrays")
    ap.add_argument("-o", "--out", required=True, help="profile.h5")
    profile(ap.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
