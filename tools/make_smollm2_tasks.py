#!/usr/bin/env python3
"""make_smollm2_tasks.py: a tasks.h5 (docs/formats.md §5) for lukv-eval on SmolLM2.

    .venv/bin/python tools/make_smollm2_tasks.py --gguf "$(scripts/fetch-smollm2)" \
        -o build-h15/smollm2-tasks.h5 [--format plain|chat] [--niah 60] [--multikey 0 [--keys 4]] [--ppl 20]

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

niah_multikey (--multikey N): the same with --keys needles (default 4) for
as many different words at as many depths; the question asks for one of them
(RULER's multikey: the others are distractors that a cache must not confuse
with it).

ppl: the context is the first --context-len tokens of a held-out window, the
question empty, the answer the next 64 tokens (held-out perplexity under
compression). Uses windows other than the niah samples' where possible.

Two options for diagnosis (docs/results.md, "Where the two-key losses come
from"): --answer distractor makes each niah_multikey sample's answer the
value of the needle that was *not* asked for (exact match then counts the
samples where the model gives the distractor's number; same seeds, so the
same contexts and questions as --answer asked). --name-by-sample names
every sample's task "<task>#<index>" so that lukv-eval reports each sample
on a row of its own. (The question-aware protocol is lukv-eval's
--protocol query-aware.)

Calibration samples (docs/results.md, "Calibrating on retrieval samples"):
--corpus-future F writes a corpus.h5 for lukv-profile instead of a tasks.h5.
Each niah sample becomes one sequence of --context-len + F tokens: the
context, the question, the answer and the end of the turn, then the start of
another window as filler. --needle-style code uses needle sentences and keys
that the evaluation's tasks never use; with --heldout
data/corpora/smollm2-calib.h5 and a seed of its own, nothing of the
evaluation appears in calibration.

Samples are interleaved (--ppl-every: one ppl after every K niah) so that
`lukv-eval --samples N` takes a mix. Random draws: numpy default_rng seeded
with --seed (>= 1 000 000) and the sample index.
"""
import argparse
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lukv_h5  # noqa: E402

WORDS = ("apple river candle mirror falcon harbor violet copper meadow lantern thunder pebble "
         "orchid saddle glacier walnut ember quartz willow beacon cactus dolphin fossil granite "
         "hazel igloo jasmine kettle lemon marble nectar oyster parrot quiver raven sapphire "
         "tulip umbrella velvet wagon yarn zebra anchor basket cobalt dagger eagle feather "
         "garnet hammock ivory jungle kiwi ladder magnet napkin").split()

NEEDLE = " The special magic number for {k} is: {v}."
QUESTION = " What is the special magic number for {k}? Answer: "
CHAT_Q = " What is the special magic number for {k}? Answer with the number only."
CHAT_A = "The special magic number for {k} is: "

# --needle-style code: other words for the same task, and keys disjoint from
# WORDS, so that a calibration corpus built with it (--corpus-future) shares
# neither the sentences nor the keys of the evaluation's needles.
CODE_WORDS = ("alder bramble cinder drizzle elm fjord gable heron inlet juniper kelp loom "
              "mantle nutmeg otter prairie quill reef spruce thistle upland vale wren yew "
              "atlas bison comet dune estuary ferry grove hollow isle jetty knoll lagoon").split()
CODE_NEEDLE = " Remember: the access code of the {k} vault is {v}."
CODE_QUESTION = " What is the access code of the {k} vault? Answer: "
CODE_CHAT_Q = " What is the access code of the {k} vault? Answer with the number only."
CODE_CHAT_A = "The access code of the {k} vault is "
assert not set(WORDS) & set(CODE_WORDS)
# --needle-style: (keys, needle, plain question, chat question, chat reply prefix)
STYLES = {"magic": (WORDS, NEEDLE, QUESTION, CHAT_Q, CHAT_A),
          "code": (CODE_WORDS, CODE_NEEDLE, CODE_QUESTION, CODE_CHAT_Q, CODE_CHAT_A)}


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
    ap.add_argument("--multikey", type=int, default=0)
    ap.add_argument("--keys", type=int, default=4, help="needles per niah_multikey sample (>= 2)")
    ap.add_argument("--ppl", type=int, default=20)
    ap.add_argument("--ppl-every", type=int, default=3, help="one ppl sample after every K niah samples")
    ap.add_argument("--ppl-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1_000_000)
    ap.add_argument("--answer", choices=("asked", "distractor"), default="asked",
                    help="niah_multikey: the asked needle's value, or another needle's")
    ap.add_argument("--name-by-sample", action="store_true",
                    help='task names "<task>#<index>": lukv-eval then reports every sample')
    ap.add_argument("--needle-style", choices=tuple(STYLES), default="magic",
                    help="magic: the evaluation's needle sentence and keys; code: other "
                         "sentences and a disjoint key list (for calibration corpora)")
    ap.add_argument("--corpus-future", type=int, default=0, metavar="F",
                    help="write a corpus.h5 (docs/formats.md section 2) for lukv-profile instead: "
                         "each niah sample becomes context + question + answer + end of turn, "
                         "filled up to --context-len + F tokens with the start of another window "
                         "(teacher mode then scores the answer's attention to the needle)")
    a = ap.parse_args()
    if a.seed < 1_000_000:
        sys.exit("make_smollm2_tasks: --seed must be >= 1000000")
    if a.answer == "distractor" and a.multikey < 1:
        sys.exit("make_smollm2_tasks: --answer distractor needs niah_multikey samples (--multikey N)")
    words, needle_s, q_plain, q_chat, a_chat = STYLES[a.needle_style]
    if not 2 <= a.keys <= len(words):
        sys.exit(f"make_smollm2_tasks: --keys must be in [2, {len(words)}]")
    if a.corpus_future < 0 or (a.corpus_future and (a.ppl or a.format != "chat")):
        sys.exit("make_smollm2_tasks: --corpus-future F needs F >= 1, --format chat and --ppl 0")
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

    def number(rng):
        v = "".join(str(d) for d in rng.integers(0, 10, 7))
        return str(rng.integers(1, 10)) + v[1:] if v[0] == "0" else v

    def with_needles(i, rng, needles):
        """[prefix] + haystack with the needles (token lists) inserted in order
        after sentence ends at depths drawn in [0.05, 0.95]; exactly T tokens.
        Returns the context and the needles' relative depths."""
        n_hay = T - len(prefix) - sum(len(n) for n in needles)
        w = wins[i % W]
        start = int(rng.integers(0, len(w) - n_hay + 1))
        hay = list(w[start:start + n_hay])
        cands = [j + 1 for j in range(n_hay - 1) if hay[j] in ends]
        pos = []
        for d in sorted(rng.uniform(0.05, 0.95, len(needles))):
            want = int(d * n_hay)
            free = [c for c in cands if c not in pos] if cands else []
            pos.append(min(free, key=lambda j: abs(j - want)) if free else want)
        pos.sort()
        ctx, at = list(prefix), 0
        for p, n in zip(pos, needles):
            ctx += hay[at:p] + n
            at = p
        ctx += hay[at:]
        assert len(ctx) == T, len(ctx)
        return ctx, [p / n_hay for p in pos]

    def ask(q_plain, q_chat, a_chat, k):
        if a.format == "chat":
            return enc(tok, q_chat.format(k=k) + post_s + a_chat.format(k=k))
        return enc(tok, q_plain.format(k=k))

    def digits(v):
        ans = enc(tok, v)
        assert len(ans) == 7 and enc(tok, "Answer: " + v)[-7:] == ans
        return ans

    def niah(i):
        rng = np.random.default_rng([a.seed, 1, i])
        k = words[rng.integers(len(words))]
        v = number(rng)
        ctx, d = with_needles(i, rng, [enc(tok, needle_s.format(k=k, v=v))])
        return ("niah_single", ctx, ask(q_plain, q_chat, a_chat, k), digits(v)), d[0]

    def multikey(i):
        rng = np.random.default_rng([a.seed, 2, i])
        keys = [words[j] for j in rng.choice(len(words), a.keys, replace=False)]
        vals = [number(rng) for _ in keys]
        ctx, d = with_needles(i + W // 3, rng, [enc(tok, needle_s.format(k=k, v=v)) for k, v in zip(keys, vals)])
        j = int(rng.integers(a.keys))  # the needles stand in this order; ask for the j-th
        ans = j
        if a.answer == "distractor":  # another needle, drawn after every draw above
            ans = int(np.random.default_rng([a.seed, 3, i]).choice([x for x in range(a.keys) if x != j]))
        return ("niah_multikey", ctx, ask(q_plain, q_chat, a_chat, keys[j]), digits(vals[ans])), d[j]

    def ppl(j):
        w = wins[(W - 1 - j) % W]  # from the other end of the split than the niah haystacks
        return ("ppl", list(w[:T]), [], list(w[T:T + a.ppl_len]))

    # niah-type samples in turn (single, multikey), one ppl
    # after every --ppl-every of them
    queue, counts = [], {"niah": 0, "multikey": 0}
    gens = (("niah", a.niah, niah), ("multikey", a.multikey, multikey))
    while any(counts[n] < want for n, want, _ in gens):
        for n, want, g in gens:
            if counts[n] < want:
                queue.append((g, counts[n]))
                counts[n] += 1
    samples, depths, pi = [], [], 0
    for qi, (g, i) in enumerate(queue):
        s, d = g(i)
        samples.append(s), depths.append(d)
        if (qi + 1) % a.ppl_every == 0 and pi < a.ppl:
            samples.append(ppl(pi))
            pi += 1
    while pi < a.ppl:
        samples.append(ppl(pi))
        pi += 1

    if a.name_by_sample:
        samples = [(f"{s[0]}#{i:03d}",) + s[1:] for i, s in enumerate(samples)]
    mk = f" + niah_multikey ({a.keys} keys)" if a.multikey else ""
    if a.corpus_future:
        write_corpus(a, a.output, samples, wins, enc(tok, post_s.split("<|im_start|>")[0]), vocab, mk)
        print(f"{a.output}: corpus of {len(samples)} samples of {T} + {a.corpus_future} tokens "
              f"({a.needle_style} needles), needle depths {min(depths):.2f}..{max(depths):.2f}", file=sys.stderr)
        return
    lukv_h5.write_tasks(a.output, [s[0] for s in samples], [s[1] for s in samples], [s[2] for s in samples],
                        [s[3] for s in samples], dict(
                            created_by="lukv tools/make_smollm2_tasks.py",
                            tokenizer="gguf:" + os.path.basename(a.gguf), vocab_size=vocab,
                            source=f"niah_single{mk} ({a.format}) + ppl on {a.heldout}, seed {a.seed}, T {T}"
                            + (f", answer {a.answer}" if a.answer != "asked" else "")))
    print(f"{a.output}: {len(samples)} samples ({a.niah} niah_single, {a.multikey} niah_multikey "
          f"[{a.keys} keys, {a.format}], {a.ppl} ppl), context {T}, "
          f"needle depths {min(depths):.2f}..{max(depths):.2f}" if depths else f"{a.output}: {len(samples)} samples",
          file=sys.stderr)


def write_corpus(a, path, samples, wins, end_of_turn, vocab, mk):
    """Each sample as one calibration sequence of exactly T + F tokens: the
    context, then question + answer + end of turn as the start of the future,
    the rest of the future from the start of another window. The profile's
    utility then includes the answer steps' attention to the needle."""
    T, F, W = a.context_len, a.corpus_future, len(wins)
    seqs = []
    for i, (_, ctx, q, ans) in enumerate(samples):
        fut = list(q) + list(ans) + list(end_of_turn)
        if len(fut) > F:
            sys.exit(f"make_smollm2_tasks: --corpus-future {F} is shorter than question + answer ({len(fut)} tokens)")
        fut += list(wins[(i + W // 2) % W][:F - len(fut)])
        seqs.append(np.asarray(list(ctx) + fut, np.int32))
        assert len(seqs[-1]) == T + F
    lukv_h5.write_corpus(path, seqs, dict(
        created_by="lukv tools/make_smollm2_tasks.py", tokenizer="gguf:" + os.path.basename(a.gguf), vocab_size=vocab,
        source=f"niah_single{mk} ({a.needle_style} needles, chat) on {a.heldout}, seed {a.seed}, "
               f"T {T}: context + question + answer + end of turn + filler to T + {F}"))


if __name__ == "__main__":
    main()
