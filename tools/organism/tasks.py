"""Byte-level sequences for lukv-tiny: natural text and RULER-style retrieval.

Shared by train.py (training mixture) and needle_eval.py (evaluation prompts),
so both use exactly the same text templates. numpy only.

Token ids: bytes 0..255, BOS = 256, EOS = 257; the model's vocabulary is
padded to VOCAB = 264 (ids 258..263 never occur).

A retrieval sequence is: BOS, a haystack of natural text with "needle" lines
inserted at line starts, then a block of questions, each followed by its
answer, then EOS, exactly L tokens in all. Answer bytes get ANSWER_WEIGHT in
the loss. Tasks (RULER, Hsieh et al. 2024, adapted to bytes):

  single      one key -> value needle, one question
  multikey    1..K keys, each with its own value; a question for every key,
              in random order (the first question looks exactly like the
              evaluation prompt)
  multivalue  one key with 2..4 values; one question asking for all of them
              in order of appearance, plus single-key questions for extra keys
  vartrack    variable tracking: "VAR ABCDE = 12345." then
              "VAR FGHIJ = VAR ABCDE." ...; asks which variables hold a value

Seeds: every sequence has its own numpy Generator made from a SeedSequence
whose entropy starts with a domain tag: TRAIN_DOMAIN for training,
EVAL_DOMAIN for evaluation, so an evaluation stream never equals a training
stream. Keys are random pseudo-words and values random 7-digit numbers, so
nothing can be memorised.
"""
import numpy as np

BOS = 256
EOS = 257
VOCAB = 264
ANSWER_WEIGHT = 20.0
TRAIN_DOMAIN = 1  # training: SeedSequence([1, run_seed, step])
EVAL_DOMAIN = 2   # needle_eval: SeedSequence([2, context, task, trial]), trial 0..99

_CONS = "bcdfghjklmnprstvwz"
_VOW = "aeiou"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def rng_for(*entropy):
    return np.random.default_rng(np.random.SeedSequence(list(entropy)))


def pseudo_word(rng):
    n = int(rng.integers(2, 4))
    s = "".join(_CONS[rng.integers(len(_CONS))] + _VOW[rng.integers(len(_VOW))] for _ in range(n))
    if rng.random() < 0.5:
        s += _CONS[rng.integers(len(_CONS))]
    return s


def distinct(rng, n, make):
    out = []
    while len(out) < n:
        w = make(rng)
        if w not in out:
            out.append(w)
    return out


def value7(rng):
    return str(int(rng.integers(1_000_000, 10_000_000)))


def var_name(rng):
    return "".join(_UPPER[i] for i in rng.integers(0, 26, size=5))


def needle_line(key, value):
    return "One of the special magic numbers for %s is: %s." % (key, value)


def question_prefix(key):
    """The question and answer prefix: the evaluation prompt ends with this."""
    return "What is the special magic number for %s?\nThe special magic number for %s is: " % (key, key)


class Builder:
    """Builds sequences as (tokens, weights). weights[i] is the loss weight of
    predicting tokens[i] from tokens[:i] (weights[0] is unused)."""

    def __init__(self, text):
        self.text = np.asarray(text, dtype=np.uint8)  # [N] haystack bytes
        assert len(self.text) > 8192

    # ---- pieces -----------------------------------------------------------
    def _window(self, rng, n):
        start = int(rng.integers(0, len(self.text) - n))
        return self.text[start:start + n]

    def _with_needles(self, rng, hay, needles, limit):
        """Insert needle lines (in the given order, at sorted random depths in
        [0, limit]) into hay at line starts. Each needle becomes its own line:
        +1 or +2 bytes of newline. Returns uint8 [len(hay) + inserted]."""
        n = len(hay)
        pos = np.sort(rng.integers(0, limit + 1, size=len(needles)))
        parts, prev = [], 0
        for p, s in zip(pos, needles):
            p = int(max(p, prev))
            # move to the next line start within 160 bytes (and within limit)
            nl = np.flatnonzero(hay[p:min(limit, p + 160)] == 10)
            if len(nl):
                p = p + int(nl[0]) + 1
                line = s.encode() + b"\n"
            elif p == 0 or hay[p - 1] == 10:
                line = s.encode() + b"\n"
            else:
                line = b"\n" + s.encode() + b"\n"
            parts.append(hay[prev:p])
            parts.append(np.frombuffer(line, dtype=np.uint8))
            prev = p
        parts.append(hay[prev:n])
        return np.concatenate(parts)

    @staticmethod
    def _qa(segments):
        """segments: list of (str, is_answer). Returns bytes and weights."""
        bs, ws = [], []
        for s, ans in segments:
            b = s.encode()
            bs.append(b)
            ws.append(np.full(len(b), ANSWER_WEIGHT if ans else 1.0, dtype=np.float32))
        return np.frombuffer(b"".join(bs), dtype=np.uint8), np.concatenate(ws)

    def _assemble(self, rng, L, needles, qa_segments, eos=True):
        """BOS + haystack-with-needles + "\n\n" + QA (+ EOS): exactly L tokens.
        Returns None when the needles and questions leave too little haystack."""
        qa_b, qa_w = self._qa([("\n\n", False)] + qa_segments)
        fixed = 1 + len(qa_b) + (1 if eos else 0) + sum(len(s) + 2 for s in needles)
        h = L - fixed
        if h < L // 4:
            return None
        # 2 spare bytes per needle: a needle takes 1 or 2 newline bytes, the
        # surplus is cut from the end, after the last needle (depths <= h)
        hay = self._with_needles(rng, self._window(rng, h + 2 * len(needles)), needles, h)
        hay = hay[:L - 1 - len(qa_b) - (1 if eos else 0)]
        tok = np.empty(L, dtype=np.int64)
        w = np.ones(L, dtype=np.float32)
        tok[0] = BOS
        w[0] = 0.0
        tok[1:1 + len(hay)] = hay
        k = 1 + len(hay)
        tok[k:k + len(qa_b)] = qa_b
        w[k:k + len(qa_b)] = qa_w
        if eos:
            tok[L - 1] = EOS
        assert k + len(qa_b) + (1 if eos else 0) == L
        return tok, w

    # ---- tasks --------------------------------------------------------------
    def natural(self, rng, L):
        tok = np.empty(L, dtype=np.int64)
        tok[0] = BOS
        tok[1:] = self._window(rng, L - 1)
        w = np.ones(L, dtype=np.float32)
        w[0] = 0.0
        return tok, w

    def multikey(self, rng, L, n_keys, n_ask=None):
        keys = distinct(rng, n_keys, pseudo_word)
        vals = [value7(rng) for _ in keys]
        order = list(rng.permutation(n_keys))[:n_keys if n_ask is None else n_ask]
        qa = []
        for i in order:
            qa += [(question_prefix(keys[i]), False), (vals[i], True), (".\n", False)]
        needles = [needle_line(k, v) for k, v in zip(keys, vals)]
        perm = rng.permutation(n_keys)  # needle order in the text is independent of key order
        return self._assemble(rng, L, [needles[i] for i in perm], qa)

    def multivalue(self, rng, L, n_vals, n_extra):
        keys = distinct(rng, 1 + n_extra, pseudo_word)
        vals = [value7(rng) for _ in range(n_vals)]
        extra = [value7(rng) for _ in range(n_extra)]
        lines = [(0, needle_line(keys[0], v)) for v in vals]
        lines += [(1, needle_line(k, v)) for k, v in zip(keys[1:], extra)]
        perm = rng.permutation(len(lines))
        lines = [lines[i] for i in perm]
        # answer lists the values in order of appearance in the text
        in_order = [s.rsplit(" ", 1)[1][:-1] for t, s in lines if t == 0]
        qa = [("What are all the special magic numbers for %s?\nThe special magic numbers for %s are: "
               % (keys[0], keys[0]), False), (", ".join(in_order), True), (".\n", False)]
        for i in rng.permutation(n_extra):
            qa += [(question_prefix(keys[1 + i]), False), (extra[i], True), (".\n", False)]
        return self._assemble(rng, L, [s for _, s in lines], qa)

    def vartrack(self, rng, L, n_chains, n_hops):
        names = distinct(rng, n_chains * (n_hops + 1), var_name)
        nums = distinct(rng, n_chains, lambda r: str(int(r.integers(10_000, 100_000))))
        chains = [names[c * (n_hops + 1):(c + 1) * (n_hops + 1)] for c in range(n_chains)]
        # interleave the chains, keeping each chain's own order
        seq, idx = [], [0] * n_chains
        while len(seq) < len(names):
            c = int(rng.integers(n_chains))
            if idx[c] <= n_hops:
                ch = chains[c]
                j = idx[c]
                seq.append("VAR %s = %s." % (ch[j], nums[c] if j == 0 else "VAR " + ch[j - 1]))
                idx[c] += 1
        qa = []
        for c in rng.permutation(n_chains):
            qa += [("Find all variables that are assigned the value %s.\nAnswer: " % nums[c], False),
                   (" ".join(chains[c]), True), (".\n", False)]
        return self._assemble(rng, L, seq, qa)

    # ---- the training mixture ------------------------------------------------
    @staticmethod
    def max_keys(L):
        # a needle line costs ~57 bytes: needles take at most ~30% of L
        return int(max(1, min(8, (0.3 * L) // 57)))

    @staticmethod
    def max_questions(L):
        # a question with its answer costs ~100 bytes: at most ~25% of L
        return int(max(1, min(8, (0.25 * L) // 100)))

    def train_sequence(self, rng, L, p_retrieval):
        """One training sequence of L tokens: natural text with probability
        1 - p_retrieval, else one of the retrieval tasks."""
        if rng.random() >= p_retrieval:
            return self.natural(rng, L)
        kmax, qmax = self.max_keys(L), self.max_questions(L)
        for _ in range(8):
            t = rng.random()
            if t < 0.20:
                out = self.multikey(rng, L, 1)
            elif t < 0.65:
                out = self.multikey(rng, L, int(rng.integers(1, kmax + 1)), qmax)
            elif t < 0.80:
                nv = int(rng.integers(2, 5))
                ne = int(rng.integers(0, max(0, min(kmax - nv, qmax - 1)) + 1))
                out = self.multivalue(rng, L, nv, ne)
            else:
                hops = int(rng.integers(1, 5))
                chains = int(rng.integers(1, max(1, min(4, qmax)) + 1))
                out = self.vartrack(rng, L, chains, hops)
            if out is not None:
                return out
        return self.natural(rng, L)

    # ---- evaluation prompts ----------------------------------------------------
    def eval_prompt(self, rng, prompt_len, n_keys):
        """Needle-in-a-haystack prompt of exactly prompt_len tokens (BOS
        included) ending with "...is: "; returns (tokens int64 [prompt_len],
        answer str). n_keys needles are inserted, one of them is asked."""
        keys = distinct(rng, n_keys, pseudo_word)
        vals = [value7(rng) for _ in keys]
        target = int(rng.integers(n_keys))
        qa = [(question_prefix(keys[target]), False)]
        out = self._assemble(rng, prompt_len, [needle_line(k, v) for k, v in zip(keys, vals)], qa, eos=False)
        if out is None:
            raise ValueError("a %d-token prompt is too short for %d needles" % (prompt_len, n_keys))
        return out[0], vals[target]
