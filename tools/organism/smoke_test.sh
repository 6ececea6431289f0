#!/usr/bin/env bash
# End-to-end CPU test of the organism tools on a tiny model (~1-2 min):
# corpus present -> calibration files (to a temp dir) -> train --smoke ->
# transformers logits check -> needle_eval -> model card.
#
#   tools/organism/smoke_test.sh [PYTHON]   (default: build-organism/venv/bin/python)
#
# Needs build-organism/corpus (make_corpus.sh) and a Python with torch,
# transformers, safetensors, numpy (see README.md). Exit 0 when all pass.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${1:-$root/build-organism/venv/bin/python}"
corpus="$root/build-organism/corpus"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

[ -f "$corpus/train.bin" ] || { echo "smoke_test: run tools/organism/make_corpus.sh first" >&2; exit 1; }
/usr/bin/python3 "$here/make_calib.py" --corpus "$corpus" --outdir "$tmp/corpora"
"$py" "$here/train.py" --smoke --corpus "$corpus" --out "$tmp/model" | tail -4
grep -q "HF check" "$tmp/model/train_log.txt"
"$py" "$here/needle_eval.py" --model "$tmp/model" --heldout "$corpus/heldout.bin" \
    --contexts 512 --trials 4 --batch 4 --json "$tmp/model/needle.json"
/usr/bin/python3 "$here/model_card.py" "$tmp/model"
grep -q "lukv-tiny" "$tmp/model/MODEL_CARD.md"
echo "smoke_test: passed"
