#!/usr/bin/env python3
"""PyTorch SDPA peer for bench-engine's flash-attention numbers.

Times torch.nn.functional.scaled_dot_product_attention (causal, bf16, GQA) at
the shapes bench-engine uses (Llama-3.1-8B: Hq 32, Hkv 8, d 128) and prints
milliseconds and TFLOP/s with the same FLOP count (4 d Hq T(T+1)/2), so the two
outputs compare line by line. Run it on the same GPU in the same session:

    python3 bench/sdpa_peer.py [--lengths 4096,16384,32768] [--heads 32 --kv-heads 8 --head-dim 128]

Needs torch with CUDA; exits 77 with one line without them. Note that SDPA
returns no log-sum-exp here, while lukv's kernel also writes it.
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="4096,16384,32768")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    try:
        lengths = [int(x) for x in args.lengths.split(",")]
    except ValueError:
        print(f"sdpa_peer: --lengths: {args.lengths!r} is not a list of integers", file=sys.stderr)
        return 2
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"sdpa_peer: torch is not installed ({e}): skipped", file=sys.stderr)
        return 77
    if not torch.cuda.is_available():
        print("sdpa_peer: torch sees no CUDA device: skipped", file=sys.stderr)
        return 77
    hq, hkv, d = args.heads, args.kv_heads, args.head_dim
    print(f"sdpa_peer: torch {torch.__version__}, {torch.cuda.get_device_name(0)}; "
          f"SDPA causal bf16, Hq {hq}, Hkv {hkv}, d {d}")
    print(f"  {'T':>8} {'ms':>12} {'TFLOP/s':>10}  backend")
    for T in lengths:
        q = torch.randn(1, hq, T, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(1, hkv, T, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(1, hkv, T, d, device="cuda", dtype=torch.bfloat16)
        try:
            def run():
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            run()
            how = "enable_gqa"
        except TypeError:  # torch < 2.5: expand K/V to every query head
            k = k.repeat_interleave(hq // hkv, dim=1)
            v = v.repeat_interleave(hq // hkv, dim=1)

            def run():
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            run()
            how = "K/V expanded"
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(args.reps):
            run()
        b.record()
        torch.cuda.synchronize()
        ms = a.elapsed_time(b) / args.reps
        flops = 4.0 * d * hq * T * (T + 1) / 2.0
        print(f"  {T:>8} {ms:>12.3f} {flops / (ms * 1e-3) / 1e12:>10.1f}  {how}")
        del q, k, v
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
