#!/usr/bin/env bash
# Fetch the English ChatterBot corpus from the PyPI package chatterbot-corpus==1.3.3 (BSD-3-Clause;
# small hand-written question/answer conversations in YAML) and convert it into chat JSONL for
# fine-tuning: one row per conversation,
#   {"messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": A}, ...]}
#
# Usage: tools/fetch_chatterbot.sh [OUT_DIR]        (default: data/chatterbot/)
# Result: OUT_DIR/train.jsonl (804 rows) and OUT_DIR/valid.jsonl (95 rows), both sha256-verified.
#
# The package is a wheel (chatterbot_corpus-1.3.3-py2.py3-none-any.whl, sha256-verified); its 21
# English files chatterbot_corpus/data/english/*.yml hold 2,026 conversations, converted by
# tools/chatterbot_to_jsonl.py (standard library only, no PyYAML; see its docstring): turns are
# whitespace-stripped, a final unanswered user turn is dropped (43 conversations), exact duplicates
# are written once (1,127 of them: tech_support.yml is 10 distinct pairs repeated 1,050 times,
# coding.yml has 98 distinct of 184), and one typo in trivia.yml (a missing "- ") is repaired.
# That leaves 899 distinct conversations (2,036 turns); a row goes to valid.jsonl when the sha256
# of its JSON is 0 mod 10, else to train.jsonl.
#
# Idempotent: if both files are already there with the right hashes, nothing is downloaded.
# Uses $PIP if set (e.g. PIP="/work/refvenv/bin/python -m pip"), else python3 -m pip, and
# python3 (or $PYTHON) for the extraction and conversion. --no-deps: the package has none we need.
set -euo pipefail

OUT_DIR="${1:-data/chatterbot}"
PKG="chatterbot-corpus==1.3.3"
WHEEL="chatterbot_corpus-1.3.3-py2.py3-none-any.whl"
WHEEL_SHA256="86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"
MEMBER_DIR="chatterbot_corpus/data/english"
NFILES=21
TRAIN_SHA256="aee484b5f7cab83b0614ae9ccc92d7a8a5d4e477617ed1a36670aa5e25fc03d0"
VALID_SHA256="2e399bbf83b9631b7137f7658be1d9ab96fe71694c8c5f8ac7a0f614577d04aa"
TRAIN="${OUT_DIR%/}/train.jsonl"
VALID="${OUT_DIR%/}/valid.jsonl"
PY="${PYTHON:-python3}"
CONVERTER="$(dirname "${BASH_SOURCE[0]}")/chatterbot_to_jsonl.py"

FETCH_NAME=fetch_chatterbot
# shellcheck source=lib/fetch.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fetch.sh"

command -v "$PY" >/dev/null 2>&1 || die "no $PY found (install python3, or set PYTHON=/path/to/python)"
[ -f "$CONVERTER" ] || die "converter not found: $CONVERTER"

if [ -f "$TRAIN" ] && [ -f "$VALID" ]; then
    if [ "$(sha_of "$TRAIN")" = "$TRAIN_SHA256" ] && [ "$(sha_of "$VALID")" = "$VALID_SHA256" ]; then
        log "already present and verified: $TRAIN, $VALID"
        echo "$TRAIN"
        echo "$VALID"
        exit 0
    fi
    log "existing $TRAIN / $VALID do not have the expected sha256; fetching again"
fi

mkdir -p "$OUT_DIR" || die "cannot create output dir '$OUT_DIR'"

fetch_wheel "$PKG" "$WHEEL" "$WHEEL_SHA256"

log "extracting $MEMBER_DIR/*.yml"
"$PY" - "$TMP/$WHEEL" "$MEMBER_DIR" "$TMP/english" <<'EOF' || die "extracting $MEMBER_DIR/*.yml from $WHEEL failed"
import os, shutil, sys, zipfile
whl, member_dir, out = sys.argv[1:]
os.makedirs(out)
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        d, base = name.rsplit("/", 1) if "/" in name else ("", name)
        if d == member_dir and base.endswith(".yml"):
            with z.open(name) as src, open(os.path.join(out, base), "wb") as dst:
                shutil.copyfileobj(src, dst)
EOF
n="$(find "$TMP/english" -name '*.yml' | wc -l | tr -d ' ')"
[ "$n" = "$NFILES" ] || die "expected $NFILES English .yml files in $WHEEL, found $n"

log "converting to JSONL"
"$PY" "$CONVERTER" --out-dir "$TMP/out" "$TMP/english" >&2 || die "conversion failed (see the message above)"

verify_sha "$TMP/out/train.jsonl" "$TRAIN_SHA256" "(tools/chatterbot_to_jsonl.py changed? then update TRAIN_SHA256)"
verify_sha "$TMP/out/valid.jsonl" "$VALID_SHA256" "(tools/chatterbot_to_jsonl.py changed? then update VALID_SHA256)"
place "$TMP/out/train.jsonl" "$TRAIN" "$OUT_DIR"
place "$TMP/out/valid.jsonl" "$VALID" "$OUT_DIR"
