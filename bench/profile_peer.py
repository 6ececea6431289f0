#!/usr/bin/env python3
"""PyTorch peer of bench-profile: the profiler's per-layer statistics
(docs/profiling.md, profiler/stats.h) written the way one would in PyTorch,
chunked over query rows so that no T x T matrix exists, timed on the GPU.

Same definitions as lukv's CPU and CUDA paths:
  vnorm   ||W_O[:, q d:(q+1) d] v_j|| via the Gram matrices, normalised per layer
  utility max (or sum) over the F future rows of exp(scale q.k - lse) * vnorm,
          max over the GQA group
  snapkv  sum over the last w context rows (causal), max-pool (odd kernel,
          -inf padding), mean over the group
  keydiff -cos(k_j, mean of unit keys)
  curves  per head, mid tokens sorted by score descending (stable: ties to the
          lower index), suffix sums in float64, sampled at the grid points
          m_g = clamp(round(g T_ctx / G) - s - w, 0, n_mid)

Inputs are random at the requested shape (q, k, v uniform in [-1, 1) rounded
to bf16 then widened to f32, as the engine's tap hands them over; o_proj
normal / sqrt(Hq d)); lse is computed once, outside the timing (the forward
provides it), and so are the Gram matrices W_Oq^T W_Oq (once per layer and
run, as in lukv-profile). Prints the mean milliseconds of one layer's statistics.

  python3 bench/profile_peer.py --T 4096 --F 512
"""
import argparse
import sys
import time


def keep_counts(G, T_ctx, s, w):
    out = []
    n_mid = T_ctx - s - w
    for g in range(G + 1):
        kept = (2 * g * T_ctx + G) // (2 * G)
        out.append(min(max(kept - s - w, 0), n_mid))
    return out


def gram(torch, wo, Hq, d):
    """M_q = W_Oq^T W_Oq, [Hq, d, d]: once per layer, as lukv-profile does."""
    D = wo.shape[0]
    W = wo.view(D, Hq, d).permute(1, 0, 2)                  # [Hq, D, d]
    return torch.matmul(W.transpose(1, 2), W)


def layer_stats(torch, q, k, v, lse, M, T_ctx, F, scale, sink, window, pool, grid, mode, chunk_elems):
    """q [T, Hq, d], k, v [T, Hkv, d], lse [Hq, T], M [Hq, d, d] (f32, cuda)."""
    T, Hq, d = q.shape
    Hkv = k.shape[1]
    g = Hq // Hkv
    dev = q.device

    # value norms: vnorm^2 = v^T (W_Oq^T W_Oq) v
    vq = v[:T_ctx].permute(1, 0, 2).repeat_interleave(g, 0)  # [Hq, T_ctx, d]
    n2 = (torch.matmul(vq, M) * vq).sum(-1, dtype=torch.float64)
    vn = n2.clamp_min(0).sqrt()
    vn = (vn / vn.sum()).float()                             # [Hq, T_ctx]

    kc = k[:T_ctx].permute(1, 0, 2)                          # [Hkv, T_ctx, d]
    rows = max(1, chunk_elems // (Hq * T_ctx))

    def reduce_rows(r0, r1, use_max, causal):
        acc = torch.zeros(Hq, T_ctx, dtype=torch.float64, device=dev)
        for i0 in range(r0, r1, rows):
            i1 = min(r1, i0 + rows)
            qc = q[i0:i1].permute(1, 0, 2).reshape(Hkv, g * (i1 - i0), d)
            s = torch.matmul(qc, kc.transpose(1, 2)).view(Hq, i1 - i0, T_ctx) * scale
            p = torch.exp(s - lse[:, i0:i1].unsqueeze(-1))
            if causal:
                i = torch.arange(i0, i1, device=dev).view(1, -1, 1)
                j = torch.arange(T_ctx, device=dev).view(1, 1, -1)
                p = p.masked_fill(j > i, 0.0)
            if use_max:
                acc = torch.maximum(acc, p.amax(1).double())
            else:
                acc += p.sum(1, dtype=torch.float64)
        return acc

    red = reduce_rows(T_ctx, T_ctx + F, mode == "max", False)
    u = (red * vn.double()).view(Hkv, g, T_ctx).amax(1).float()   # [Hkv, T_ctx]

    scores = []
    a = reduce_rows(T_ctx - window, T_ctx, False, True)            # [Hq, T_ctx]
    pooled = torch.nn.functional.max_pool1d(a.unsqueeze(1), pool, stride=1, padding=pool // 2).squeeze(1)
    scores.append(pooled.view(Hkv, g, T_ctx).mean(1).float())

    kn = kc.double()
    nrm = kn.norm(dim=-1, keepdim=True)
    unit = torch.where(nrm > 0, kn / nrm.clamp_min(1e-300), torch.zeros_like(kn))
    m = unit.mean(1, keepdim=True)                                 # [Hkv, 1, d]
    mn = m.norm(dim=-1, keepdim=True)
    inv_m = torch.where(mn > 0, 1.0 / mn.clamp_min(1e-300), torch.zeros_like(mn))
    scores.append((-(unit * m).sum(-1) * inv_m.squeeze(-1)).float())

    mg = torch.tensor(keep_counts(grid, T_ctx, sink, window), device=dev)
    lo, hi = sink, T_ctx - window
    u_mid = u[:, lo:hi]

    def curve(key):
        order = torch.sort(key[:, lo:hi], dim=-1, descending=True, stable=True).indices
        us = torch.gather(u_mid, 1, order).double()
        suffix = torch.flip(torch.cumsum(torch.flip(us, [1]), 1), [1])
        suffix = torch.cat([suffix, torch.zeros(Hkv, 1, dtype=torch.float64, device=dev)], 1)
        return suffix[:, mg].float()                               # [Hkv, G+1]

    oracle = curve(u)
    curves = [torch.maximum(torch.cummin(curve(s), 1).values, oracle) for s in scores]
    return oracle, curves


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--T", type=int, default=4096, help="rows per layer (context + future)")
    ap.add_argument("--F", type=int, default=None, help="future rows (default T/8)")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--sink", type=int, default=4)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--pool", type=int, default=7)
    ap.add_argument("--grid", type=int, default=256)
    ap.add_argument("--utility", choices=["max", "sum"], default="max")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--chunk-gib", type=float, default=2.0,
                    help="f32 score chunk [Hq, rows, T_ctx] size in GiB (default 2)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("profile_peer.py: PyTorch is not installed: skipped")
        return 77
    if not torch.cuda.is_available():
        print("profile_peer.py: no CUDA device: skipped")
        return 77
    T = a.T
    F = a.F if a.F is not None else T // 8
    T_ctx = T - F
    if F < 1 or T_ctx <= a.sink + a.window:
        print("profile_peer.py: T %d, F %d leave no mid tokens" % (T, F), file=sys.stderr)
        return 2
    Hq, Hkv, d, D = a.heads, a.kv_heads, a.head_dim, a.hidden
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(a.seed)

    def uni(*shape):
        x = torch.rand(*shape, generator=gen, device=dev) * 2 - 1
        return x.to(torch.bfloat16).float()

    q, k, v = uni(T, Hq, d), uni(T, Hkv, d), uni(T, Hkv, d)
    wo = torch.randn(D, Hq * d, generator=gen, device=dev) / (Hq * d) ** 0.5
    scale = 1.0 / d ** 0.5
    # lse of the full causal pass, chunked (not timed: the forward provides it)
    lse = torch.empty(Hq, T, device=dev)
    g = Hq // Hkv
    kt = k.permute(1, 0, 2)
    rows = max(1, int(a.chunk_gib * 2**30 / 4) // (Hq * T))
    for i0 in range(0, T, rows):
        i1 = min(T, i0 + rows)
        qc = q[i0:i1].permute(1, 0, 2).reshape(Hkv, g * (i1 - i0), d)
        s = (torch.matmul(qc, kt.transpose(1, 2)) * scale).view(Hq, i1 - i0, T)
        i = torch.arange(i0, i1, device=dev).view(1, -1, 1)
        j = torch.arange(T, device=dev).view(1, 1, -1)
        lse[:, i0:i1] = torch.logsumexp(s.masked_fill(j > i, float("-inf")), -1)
        del s
    chunk_elems = int(a.chunk_gib * 2**30 / 4)
    M = gram(torch, wo, Hq, d)  # not timed: once per layer and run, as bench-profile's "stats"

    def once():
        return layer_stats(torch, q, k, v, lse, M, T_ctx, F, scale, a.sink, a.window, a.pool, a.grid,
                           a.utility, chunk_elems)

    once()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.reps):
        oracle, curves = once()
        oracle.cpu()  # the curves reach the host, as lukv's do
    torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) * 1e3 / a.reps
    print("# profile_peer.py on %s, torch %s: Hq %d, Hkv %d, d %d, D %d, utility %s, grid %d"
          % (torch.cuda.get_device_name(), torch.__version__, Hq, Hkv, d, D, a.utility, a.grid))
    print("%7s %7s %6s %12s" % ("T", "T_ctx", "F", "torch ms"))
    print("%7d %7d %6d %12.3f" % (T, T_ctx, F, ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
