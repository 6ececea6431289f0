#!/usr/bin/python3
"""Writes tests/fixtures/profile-small.h5, a SYNTHETIC profile written by h5py.

The data are made up (no model was run): per-token utilities are drawn from
simple generative stories, scorers are noisy rankings of them, and the curves
are computed exactly as lukv-profile defines them (DESIGN §3 "Curves",
docs/formats.md). The file serves two purposes:
  * a realistic input for solver tests: heterogeneous heads (fast-falling
    "local" heads, slow step-like "retrieval" heads, mixtures), scorer fidelity
    that differs across heads and between scorers, per-sample noise;
  * the h5py -> C interop proof: it is written the way a Python user would
    write it (str attributes, Python ints, numpy arrays, gzip+shuffle chunks).

Run with Debian's interpreter (h5py + numpy):
    /usr/bin/python3 tools/make_profile_fixture.py [OUT]
Deterministic: numpy default_rng(0).
"""
import os
import sys

import h5py
import numpy as np

L, H, Q, HEAD_DIM = 6, 2, 8, 32  # layers, KV heads, query heads, head dim
G, S = 64, 12  # grid, samples
SINK, WINDOW = 4, 32
CONTEXT_LEN = 2048
SCORERS = ("snapkv", "keydiff")

# Head kinds, [L][H]: "local" (utility on the most recent tokens), "retrieval"
# (a few far-back spans), "mixed".
KINDS = [
    ["local", "local"],
    ["local", "mixed"],
    ["retrieval", "local"],
    ["mixed", "retrieval"],
    ["retrieval", "mixed"],
    ["local", "retrieval"],
]

rng = np.random.default_rng(0)

# Head-level properties, fixed across samples (that is what makes a table
# calibrated on some samples generalise to others).
tau = rng.uniform(5, 60, size=(L, H))  # recency scale of local heads
head_total = rng.uniform(0.03, 0.3, size=(L, H))  # utility mass of a head
# Fidelity in [0, 1]: correlation of a scorer's ranking with the utility.
# snapkv (window attention) sees recency well and far spans poorly; keydiff
# (key outliers) is middling everywhere and good on some retrieval heads.
FID_RANGE = {
    "snapkv": {"local": (0.9, 0.98), "mixed": (0.55, 0.8), "retrieval": (0.1, 0.45)},
    "keydiff": {"local": (0.4, 0.65), "mixed": (0.45, 0.75), "retrieval": (0.35, 0.9)},
}
fidelity = {
    sc: np.array([[rng.uniform(*FID_RANGE[sc][KINDS[l][h]]) for h in range(H)] for l in range(L)])
    for sc in SCORERS
}


def utilities(kind, M, l, h):
    """Per-mid-token utility u[M] (position M-1 is next to the window), and a
    span id per token (-1 = background) so scorers can err span-wise."""
    j = np.arange(M)
    span = np.full(M, -1)
    if kind == "local":
        u = np.exp(-(M - 1 - j) / (tau[l, h] * rng.uniform(0.8, 1.25)))
        u *= rng.lognormal(0.0, 0.4, M)
        u += 1e-3 * rng.lognormal(0.0, 1.0, M)
        return u, span
    # Retrieval: a few far-back spans carry most of the utility on top of a
    # broad heavy-tailed background, so even the oracle falls slowly.
    u = 0.6 * rng.lognormal(0.0, 1.2, M) / M
    n_spans = rng.integers(3, 9)
    for k in range(n_spans):
        w = int(rng.integers(8, 64))
        a = int(rng.integers(0, max(1, M - w)))
        u[a:a + w] += rng.lognormal(0.0, 0.7) * rng.uniform(0.5, 1.0, w) / (n_spans * w)
        span[a:a + w] = k
    if kind == "mixed":
        loc = np.exp(-(M - 1 - j) / tau[l, h]) * rng.lognormal(0.0, 0.4, M)
        u = 0.5 * u / u.sum() + 0.5 * loc / loc.sum()
    return u, span


def scorer_scores(u, span, fid):
    """A ranking correlated with log-utility at `fid`; the noise is shared
    within a span, so a misjudged span is kept or dropped as a block (steps)."""
    z = np.log(u)
    z = (z - z.mean()) / (z.std() + 1e-12)
    noise = rng.standard_normal(len(u))
    n_span = span.max() + 1
    if n_span > 0:
        block = rng.standard_normal(n_span) * 1.5
        noise = np.where(span >= 0, block[np.maximum(span, 0)], noise)
    return fid * z + np.sqrt(max(0.0, 1.0 - fid * fid)) * noise


def loss_curve(u, order, T):
    """loss(g) = utility of the mid tokens not among the first m_g of `order`,
    m_g = max(0, round(g/G*T) - s - w) (halves away from zero, as C lround)."""
    M = len(u)
    suffix = np.concatenate([np.cumsum(u[order][::-1])[::-1], [0.0]])  # [M+1], suffix[M] = 0
    g = np.arange(G + 1)
    m = np.floor(g / G * T + 0.5).astype(np.int64) - SINK - WINDOW
    m = np.clip(m, 0, M)
    return suffix[m]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "profile-small.h5")
    T = rng.integers(1024, 2049, size=S).astype(np.int32)
    curves = {sc: np.zeros((S, L, H, G + 1), np.float64) for sc in SCORERS + ("oracle",)}
    utot = np.zeros((S, L, H), np.float64)
    for s in range(S):
        M = int(T[s]) - SINK - WINDOW
        for l in range(L):
            for h in range(H):
                u, span = utilities(KINDS[l][h], M, l, h)
                # Per-sample jitter of the head's total mass (max-utility
                # normalisation, DESIGN §3, gives small per-token values).
                u = u / u.sum() * head_total[l, h] * rng.lognormal(0.0, 0.15)
                utot[s, l, h] = u.sum()
                curves["oracle"][s, l, h] = loss_curve(u, np.argsort(-u, kind="stable"), T[s])
                for sc in SCORERS:
                    fid = np.clip(fidelity[sc][l, h] + rng.normal(0.0, 0.03), 0.0, 1.0)
                    sco = scorer_scores(u, span, fid)
                    curves[sc][s, l, h] = loss_curve(u, np.argsort(-sco, kind="stable"), T[s])
    # The oracle is the best ranking there is; clamp away rounding ties.
    for sc in SCORERS:
        curves[sc] = np.maximum(curves[sc], curves["oracle"])

    def f32(a):
        # Keep 12 mantissa bits so gzip can shrink the file below 200 KB.
        # Truncation is monotone, so order, oracle <= scorer and zeros survive.
        b = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32) & np.uint32(0xFFFFF800)
        return b.view(np.float32)

    tmp = out + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = "lukv-profile"
        f.attrs["format_version"] = 1
        f.attrs["created_by"] = "tools/make_profile_fixture.py (synthetic)"
        f.attrs["model_name"] = "fixture-synthetic"
        f.attrs["model_hash"] = "synthetic-0000000000000000"
        f.attrs["n_layers"] = L
        f.attrs["n_kv_heads"] = H
        f.attrs["n_q_heads"] = Q
        f.attrs["head_dim"] = HEAD_DIM
        f.attrs["mode"] = "teacher"
        f.attrs["context_len"] = CONTEXT_LEN
        f.attrs["future_len"] = 128
        f.attrs["sink"] = SINK
        f.attrs["window"] = WINDOW
        f.attrs["pool_kernel"] = 7
        f.attrs["utility"] = "max"
        f.attrs["grid"] = G
        f.create_dataset("sample_context_len", data=T)
        f.create_dataset("utility_total", data=utot.astype(np.float32))
        # curves[.., 0] equals utility_total exactly (nothing kept); store
        # that column untruncated so the identity holds in the file.
        for name, c in curves.items():
            c32 = f32(c)
            c32[..., 0] = utot.astype(np.float32)
            f.create_dataset("curves/" + name, data=c32, compression="gzip", compression_opts=9,
                             shuffle=True, chunks=(1, L, H, G + 1))
    os.replace(tmp, out)
    print(f"{out}: {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
