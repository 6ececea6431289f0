#!/usr/bin/env python3
"""Fill MODEL_CARD.template.md from a trained model folder.

    python3 tools/organism/model_card.py data/models/lukv-tiny

Reads MODEL/train_summary.json (train.py) and, if present, MODEL/needle.json
(needle_eval.py --json); writes MODEL/MODEL_CARD.md. Every number comes from
those files; a missing one is written as TO BE MEASURED. Standard library only.
"""
import json
import os
import sys

TBM = "TO BE MEASURED"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "MODEL_CARD.template.md")) as f:
        tpl = f.read()
    s, n = {}, {}
    p = os.path.join(d, "train_summary.json")
    if os.path.exists(p):
        with open(p) as f:
            s = json.load(f)
    p = os.path.join(d, "needle.json")
    if os.path.exists(p):
        with open(p) as f:
            n = json.load(f)
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    a = s.get("args", {})
    corpus = s.get("corpus", {})

    def get(v, fmt="%s"):
        return TBM if v is None else fmt % v

    acc = n.get("accuracy", {})
    v = {
        "params": TBM if s.get("params") is None else "{:,}".format(s["params"]),
        "layers": c["num_hidden_layers"], "hidden": c["hidden_size"], "heads": c["num_attention_heads"],
        "kv_heads": c["num_key_value_heads"], "head_dim": c.get("head_dim"), "ffn": c["intermediate_size"],
        "rope_theta": c["rope_theta"], "max_pos": c["max_position_embeddings"], "eps": c["rms_norm_eps"],
        "vocab": c["vocab_size"],
        "train_bytes": get(corpus.get("train", {}).get("bytes")),
        "train_sha": get(corpus.get("train", {}).get("sha256")),
        "heldout_bytes": get(corpus.get("heldout", {}).get("bytes")),
        "heldout_sha": get(corpus.get("heldout", {}).get("sha256")),
        "lengths": get(a.get("lengths")), "length_weights": get(a.get("length_weights")),
        "p_retrieval_pct": get(a.get("p_retrieval") and round(100 * a["p_retrieval"])),
        "device": get(s.get("device")), "torch": get(s.get("torch")), "steps": get(s.get("steps")),
        "tokens": TBM if s.get("tokens") is None else "{:,}".format(s["tokens"]),
        "train_seconds": get(s.get("train_seconds")), "wall_seconds": get(s.get("wall_seconds")),
        "lr": get(a.get("lr")), "warmup": get(a.get("warmup")),
        "min_lr_pct": get(a.get("min_lr_frac") and round(100 * a["min_lr_frac"])),
        "wd": get(a.get("weight_decay")), "tokens_per_step": get(a.get("tokens_per_step")),
        "seed": get(a.get("seed")),
        "bpb": get(s.get("heldout_bits_per_byte"), "%.3f"),
        "hf_diff": get(s.get("hf_max_abs_logit_diff"), "%.2g"),
        "trials": get(n.get("trials")),
        "eval_windows": "all" if not a.get("final_eval_windows") else a["final_eval_windows"],
    }
    for ctx, tag in ((1024, "1k"), (2048, "2k"), (4096, "4k")):
        for k in (1, 4):
            x = acc.get("%d/%d" % (ctx, k))
            v["n%s%d" % (tag, k)] = TBM if x is None else "%.0f%%" % (100 * x)
    out = os.path.join(d, "MODEL_CARD.md")
    with open(out, "w") as f:
        f.write(tpl.format(**v))
    print("wrote", out)


if __name__ == "__main__":
    main()
