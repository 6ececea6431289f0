#!/usr/bin/env bash
# Build the lukv-tiny training corpus from Debian-packaged texts.
#
#   tools/organism/make_corpus.sh [OUTDIR]      (default: build-organism/corpus)
#
# Installs the source packages with apt-get (sudo when not root), then runs
# corpus_build.py with Debian's /usr/bin/python3 (standard library only).
# Writes OUTDIR/train.bin, OUTDIR/heldout.bin and OUTDIR/manifest.json
# (sizes, sha256, package versions, document tables). Sources and licences:
# tools/organism/SOURCES.md. Deterministic for given package versions: file
# lists come from `dpkg -L` and are sorted, the held-out split is a fixed hash.
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/build-organism/corpus}"

pkgs=(bible-kjv bible-kjv-text jargon-text debian-reference-en python3-doc perl-doc
      manpages manpages-dev man-db groff-base bsdextrautils libc6-dev linux-libc-dev)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "make_corpus: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$out"
/usr/bin/python3 "$here/corpus_build.py" --out "$out" --jobs "${JOBS:-2}"
ls -l "$out"/train.bin "$out"/heldout.bin "$out"/manifest.json >&2
