#!/usr/bin/env python3
"""make_smollm2_tasks.py: a tasks.h5 (docs/formats.md §5) for lukv-eval on SmolLM2.

    .venv/bin/python tools/make_smollm2_tasks.py --gguf "$(scripts/fetch-smollm2)" \
        -o build-h15/smollm2-tasks.h5 [--format plain|chat] [--niah 60] [--ppl 20]

Haystacks are the token windows of data/corpora/smollm2-heldout.h5 (SmolLM2
tokens of the evaluation half of the held-out split; the table in
data/tables/smollm2/budgets.h5 was calibrated on the disjoint smollm2-calib.h5).

niah_single (RULER-style, one needle): the context is exactly --context-len
tokens: [chat prefix] + haystack tokens with the needle
" The special magic number for <word> is: <7 digits>." inserted right after a
haystack token that ends a sentence or a line, at a depth drawn uniformly in
[0.05, 0.95] of the haystack. The question is
" What is the special magic number for <word>? Answer: " (plain), or, with
--format chat, the same words closing the user turn followed by the
assistant header and "The special magic number for <word> is: " as the start
of the reply. The answer is the 7 digit tokens. SmolLM2's tokenizer writes
"Answer: 4821937" as ['Answer', ':', ' ', '4', '8', ...]: the space is a token
of its own and every digit is one token, so ending the question with the
space token and making the answer the digits is exactly the tokenisation of
the whole string.

ppl: the context is the first --context-len tokens of a held-out window, the
question empty, the answer the next 64 tokens (held-out perplexity under
compression). Uses windows other than the niah samples' where possible.

Samples are interleaved (--ppl-every: one ppl after every K niah) so that
`lukv-eval --samples N` takes a mix. Random draws: numpy default_rng seeded
with --seed (>= 1 000 000) and the sample index.
"""
import argparse
import os
import sys

import h5py
import numpy as np

WORDS = ("apple river candle mirror falcon harbor violet copper meadow lantern thunder pebble "
         "orchid saddle glacier walnut ember quartz willow beacon cactus dolphin fossil granite "
         "hazel igloo jasmine kettle lemon marble nectar oyster parrot quiver raven sapphire "
         "tulip umbrella velvet wagon yarn zebra anchor basket cobalt dagger eagle feather "
         "garnet hammock ivory jungle kiwi ladder magnet napkin").split()

NEEDLE = " The special magic number for {k} is: {v}."
QUESTION = " What is the special magic number for {k}? Answer: "
CHAT_Q = " What is the special magic number for {k}? Answer with the number only."
CHAT_A = "The special magic number for {k} is: "


def load_tok(gguf):
    from transformers import AutoTokenizer
    p = os.path.abspath(gguf)
    return AutoTokenizer.from_pretrained(os.path.dirname(p), gguf_file=os.path.basename(p))


def enc(tok, s):
    return tok.encode(s, add_special_tokens=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--heldout", default="data/corpora/smollm2-heldout.h5")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--format", choices=("plain", "chat"), default="plain")
    ap.add_argument("--context-len", type=int, default=2048)
    ap.add_argument("--niah", type=int, default=60)
    ap.add_argument("--ppl", type=int, default=20)
    ap.add_argument("--ppl-every", type=int, default=3, help="one ppl sample after every K niah samples")
    ap.add_argument("--ppl-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1_000_000)
    a = ap.parse_args()
    if a.seed < 1_000_000:
        sys.exit("make_smollm2_tasks: --seed must be >= 1000000")
    T = a.context_len
    tok = load_tok(a.gguf)
    with h5py.File(a.heldout, "r") as f:
        toks, off = f["tokens"][()], f["offsets"][()]
        vocab = int(f.attrs["vocab_size"])
    wins = [toks[off[i]:off[i + 1]] for i in range(len(off) - 1)]
    if any(len(w) < T + a.ppl_len for w in wins):
        # Contexts longer than the corpus windows (4K, 8K): the windows are
        # consecutive pieces of one token stream (documents in the split's
        # order), so join runs of them into windows long enough. Haystacks of
        # different samples then overlap when the split is short; each sample
        # still has its own needle, depth and key.
        per = -(-(T + a.ppl_len) // min(len(w) for w in wins))
        if per > len(wins):
            sys.exit(f"make_smollm2_tasks: the held-out corpus has {len(toks)} tokens, "
                     f"fewer than context + ppl answer = {T + a.ppl_len}")
        wins = [np.concatenate(wins[i:i + per]) for i in range(len(wins) - per + 1)]
    W = len(wins)

    # tokens after which a needle may start: ends a sentence or a line
    ends = set()
    for i in range(vocab):
        s = tok.decode([i])
        if s.rstrip(" ").endswith((".", "!", "?", "\n")) and len(s.strip()) <= 2:
            ends.add(i)

    if a.format == "chat":
        t = tok.apply_chat_template([{"role": "user", "content": "\x00"}], add_generation_prompt=True, tokenize=False)
        pre_s, post_s = t.split("\x00")
        prefix = enc(tok, pre_s)
    else:
        prefix, post_s = [], ""

    def niah(i):
        rng = np.random.default_rng([a.seed, 1, i])
        k = WORDS[rng.integers(len(WORDS))]
        v = "".join(str(d) for d in rng.integers(0, 10, 7))
        if v[0] == "0":
            v = str(rng.integers(1, 10)) + v[1:]
        needle = enc(tok, NEEDLE.format(k=k, v=v))
        n_hay = T - len(prefix) - len(needle)
        w = wins[i % W]
        start = int(rng.integers(0, len(w) - n_hay + 1))
        hay = list(w[start:start + n_hay])
        depth = rng.uniform(0.05, 0.95)
        want = int(depth * n_hay)
        cands = [j + 1 for j in range(n_hay - 1) if hay[j] in ends]
        pos = min(cands, key=lambda j: abs(j - want)) if cands else want
        ctx = prefix + hay[:pos] + needle + hay[pos:]
        assert len(ctx) == T, len(ctx)
        if a.format == "chat":
            q = enc(tok, CHAT_Q.format(k=k) + post_s + CHAT_A.format(k=k))
        else:
            q = enc(tok, QUESTION.format(k=k))
        ans = enc(tok, v)
        assert len(ans) == 7 and enc(tok, "Answer: " + v)[-7:] == ans
        return ("niah_single", ctx, q, ans), pos / n_hay

    def ppl(j):
        w = wins[(W - 1 - j) % W]  # from the other end of the split than the niah haystacks
        return ("ppl", list(w[:T]), [], list(w[T:T + a.ppl_len]))

    samples, depths, ni, pi = [], [], 0, 0
    while ni < a.niah or pi < a.ppl:
        for _ in range(a.ppl_every):
            if ni < a.niah:
                s, d = niah(ni)
                samples.append(s), depths.append(d)
                ni += 1
        if pi < a.ppl:
            samples.append(ppl(pi))
            pi += 1

    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    tmp = a.output + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs.update(format="lukv-tasks", format_version=1, created_by="lukv tools/make_smollm2_tasks.py",
                       tokenizer="gguf:" + os.path.basename(a.gguf), vocab_size=vocab,
                       source=f"niah_single ({a.format}) + ppl on {a.heldout}, seed {a.seed}, T {T}")
        f.create_dataset("task", data=[s[0] for s in samples], dtype=h5py.string_dtype())
        for i, name in enumerate(("context", "question", "answer"), start=1):
            parts = [np.asarray(s[i], np.int32) for s in samples]
            f[name] = np.concatenate(parts)
            f[name + "_offsets"] = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
    os.replace(tmp, a.output)
    print(f"{a.output}: {len(samples)} samples ({a.niah} niah_single [{a.format}], {a.ppl} ppl), "
          f"context {T}, needle depths {min(depths):.2f}..{max(depths):.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
