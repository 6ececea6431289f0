#!/usr/bin/env python3
"""PyTorch SDPA peer for bench-decode: decode attention on the full cache.

Times torch.nn.functional.scaled_dot_product_attention for one query token per
sequence (q [B, Hq, 1, d], K / V [B, Hkv, T, d], bf16, GQA) at the shapes
bench-decode uses, and prints microseconds per call and the bytes/s of the
K / V read, so its lines sit next to bench-decode's in one table
(docs/runtime.md). Run it on the same GPU in the same session:

    python3 bench/sdpa_decode_peer.py [--quick]

Each figure is the best of 3 means over a CUDA graph of 50 calls (as
bench-decode times lukv); --no-graph times plain back-to-back calls instead.
GQA: enable_gqa=True where this torch has it, otherwise K / V are expanded
with repeat_interleave before timing (outside the timed region), which makes
the peer read Hq/Hkv times more bytes (stated in the output).
Needs torch with CUDA; exits 77 with one line without them.
"""
import argparse
import sys

HKV, HQ, D, ITERS = 8, 32, 128, 50


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the subset bench-decode --quick runs")
    ap.add_argument("--no-graph", action="store_true", help="time plain calls, not a CUDA graph")
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"sdpa_decode_peer: torch is not installed ({e}): skipped", file=sys.stderr)
        return 77
    if not torch.cuda.is_available():
        print("sdpa_decode_peer: torch sees no CUDA device: skipped", file=sys.stderr)
        return 77
    dev = torch.device("cuda")
    try:
        F.scaled_dot_product_attention(
            torch.zeros(1, 2, 1, 8, device=dev, dtype=torch.bfloat16),
            torch.zeros(1, 1, 4, 8, device=dev, dtype=torch.bfloat16),
            torch.zeros(1, 1, 4, 8, device=dev, dtype=torch.bfloat16), enable_gqa=True)
        gqa = True
    except TypeError:
        gqa = False
    print(f"sdpa_decode_peer: torch {torch.__version__}, {torch.cuda.get_device_name(0)}; "
          f"Hkv {HKV}, Hq {HQ}, d {D}, bf16; "
          f"{'enable_gqa' if gqa else 'K/V expanded to Hq heads (repeat_interleave)'}; "
          f"{'plain calls' if args.no_graph else f'CUDA graph of {ITERS} calls'}")

    def time_call(fn):
        fn()
        torch.cuda.synchronize()
        if args.no_graph:
            run = lambda: [fn() for _ in range(ITERS)]
        else:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    fn()
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                for _ in range(ITERS):
                    fn()
            run = g.replay
        run()
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(3):
            e0 = torch.cuda.Event(enable_timing=True)
            e1 = torch.cuda.Event(enable_timing=True)
            e0.record()
            run()
            e1.record()
            e1.synchronize()
            best = min(best, e0.elapsed_time(e1) / 1e3 / ITERS)
        return best

    def one(B, T):
        q = torch.randn(B, HQ, 1, D, device=dev, dtype=torch.bfloat16)
        k = torch.randn(B, HKV, T, D, device=dev, dtype=torch.bfloat16)
        v = torch.randn(B, HKV, T, D, device=dev, dtype=torch.bfloat16)
        if gqa:
            fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        else:
            k = k.repeat_interleave(HQ // HKV, dim=1)
            v = v.repeat_interleave(HQ // HKV, dim=1)
            fn = lambda: F.scaled_dot_product_attention(q, k, v)
        t = time_call(fn)
        kv_bytes = 2 * B * HKV * T * D * 2  # what a GQA-aware kernel must read
        del q, k, v
        torch.cuda.empty_cache()
        return t, kv_bytes

    print(f"{'B':>5} {'tokens':>7} {'us/call':>10} {'GB/s (K+V)':>11}")
    Bs, Ts = [8, 16, 32, 64], [512, 2048, 8192, 16384]
    for bi, B in enumerate(Bs):
        for ti, T in enumerate(Ts):
            if args.quick and (bi % 2 or ti % 2):
                continue
            t, by = one(B, T)
            print(f"{B:>5} {T:>7} {t * 1e6:>10.2f} {by / t / 1e9:>11.1f}")
    print("\nfull cache at bench-decode (b)'s shapes:")
    for B in [1, 8, 32]:
        for T in [4096, 16384]:
            if args.quick and T == 16384:
                continue
            t, by = one(B, T)
            print(f"{B:>5} {T:>7} {t * 1e6:>10.2f} {by / t / 1e9:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
