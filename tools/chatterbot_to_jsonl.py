#!/usr/bin/env python3
"""Convert the English ChatterBot corpus (chatterbot-corpus 1.3.3, YAML) into chat JSONL.

Usage: python3 tools/chatterbot_to_jsonl.py [--out-dir DIR] [--compare-pyyaml] YML_OR_DIR...

Every input is a .yml file or a directory (all its *.yml files). The files are read in the order
of their names; each row of the output is one conversation:

    {"messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": A}, ...]}

A YAML conversation is a list of strings alternating user/assistant, so one with more than two
lines becomes a multi-turn row. Every turn loses its surrounding whitespace. A conversation is cut
before its first empty turn (none in 1.3.3), a final user turn with no answer is dropped (the
corpus has some odd-length conversations), and conversations with fewer than two turns left are
skipped; exact duplicate rows are written once.

Split: a row goes to valid.jsonl when the sha256 of its canonical JSON is 0 mod 10 (about 10%),
else to train.jsonl, so a row's split depends only on its own content; within each file the rows
are ordered by that hash (categories mixed, deterministic). Both files are written atomically
(temporary name, then rename) into --out-dir (default: data/chatterbot). One summary line goes to
stdout.

Only the Python 3 standard library is used: the YAML is read by a small parser for exactly the
subset these files use (a top-level mapping of `key:` lines to block sequences; nested `- - `
sequences; plain, 'single-quoted' and "double-quoted" scalars, possibly over several lines; `|`
literal block scalars). It refuses anything else with file:line and a reason rather than guess:
tabs, comments, anchors/tags/flow collections, `>` folded scalars, plain scalars that YAML would
read as a number/bool/null/date, mappings inside the lists, and a plain scalar continued by a line
that starts with "- " (legal YAML, but in this corpus always a missing "- " on the line before).

Known defect of the source, repaired before parsing (and logged): trivia.yml line 35 reads
`- In a game of bingo, ...?` where `- - In a game of bingo, ...?` was meant; YAML (PyYAML too)
reads it and the answer line below it as one string instead of a question/answer pair.

--compare-pyyaml (needs PyYAML; for checking this parser, not needed otherwise): also load every
(repaired) file with yaml.safe_load and fail unless the result is identical to this parser's.
"""

import argparse
import hashlib
import json
import os
import re
import sys

PROG = "chatterbot_to_jsonl"
VALID_MOD = 10  # a row is in valid.jsonl when int(sha256(row)) % VALID_MOD == 0


class YamlSubsetError(Exception):
    pass


# PyYAML's implicit resolvers (YAML 1.1): a plain scalar matching one of these is not a string.
_IMPLICIT = [
    ("bool", re.compile(r"""^(?:yes|Yes|YES|no|No|NO
                    |true|True|TRUE|false|False|FALSE
                    |on|On|ON|off|Off|OFF)$""", re.X)),
    ("float", re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X)),
    ("int", re.compile(r"""^(?:[-+]?0b[0-1_]+
                    |[-+]?0[0-7_]+
                    |[-+]?(?:0|[1-9][0-9_]*)
                    |[-+]?0x[0-9a-fA-F_]+
                    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$""", re.X)),
    ("merge", re.compile(r"^(?:<<)$")),
    ("null", re.compile(r"""^(?: ~
                    |null|Null|NULL
                    | )$""", re.X)),
    ("timestamp", re.compile(r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
                    |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
                     (?:[Tt]|[ \t]+)[0-9][0-9]?
                     :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
                     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""", re.X)),
    ("value", re.compile(r"^(?:=)$")),
]

# Double-quoted escapes, as PyYAML reads them.
_ESCAPES = {
    "0": "\0", "a": "\x07", "b": "\x08", "t": "\t", "n": "\n", "v": "\x0b", "f": "\x0c",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85",
    "_": "\xa0", "L": "\u2028", "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}

# Characters refused anywhere: tabs, CR and YAML 1.1's other line breaks, the BOM, control
# characters and whatever PyYAML's reader calls non-printable.
_BAD_CHAR = re.compile("[\t\r\x85\u2028\u2029\ufeff\ufffe\uffff\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_KEY_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):")
_PLAIN_FIRST_BAD = set("[]{}#&*!|>'\"%@`,")  # indicators that cannot start a plain scalar


def _indent(line):
    return len(line) - len(line.lstrip(" "))


def _blank(line):
    return line.strip(" ") == ""


class _Parser:
    def __init__(self, text, name):
        self.name = name
        m = _BAD_CHAR.search(text)
        if m:
            line = text.count("\n", 0, m.start()) + 1
            raise YamlSubsetError("%s:%d: unsupported character %r (tabs, CR, control characters "
                                  "and other YAML line breaks are not handled)" % (name, line, m.group()))
        self.ends_with_newline = text.endswith("\n")
        self.lines = text.split("\n")
        if self.ends_with_newline:
            self.lines.pop()  # the empty string after the final newline
        self.n = len(self.lines)

    def err(self, i, msg):
        raise YamlSubsetError("%s:%d: %s" % (self.name, i + 1, msg))

    def skip_blank(self, i):
        while i < self.n and _blank(self.lines[i]):
            i += 1
        return i

    # document := ( KEY ':' NEWLINE block-sequence )*
    def document(self):
        result = {}
        i = self.skip_blank(0)
        if i >= self.n:
            self.err(0, "empty document")
        while i < self.n:
            line = self.lines[i]
            if _indent(line) != 0:
                self.err(i, "expected a top-level 'key:' at column 1")
            m = _KEY_LINE.fullmatch(line.rstrip(" "))
            if not m:
                self.err(i, "expected a top-level 'key:' line with nothing after the colon, got %r" % line[:60])
            key = m.group(1)
            self.check_plain_is_string(i, key)
            if key in result:
                self.err(i, "duplicate key %r" % key)
            j = self.skip_blank(i + 1)
            if j >= self.n or not self.lines[j].lstrip(" ").startswith("- "):
                self.err(min(j, self.n - 1), "expected a block sequence ('- ' items) under %r" % key)
            result[key], i = self.sequence(j, _indent(self.lines[j]))
            i = self.skip_blank(i)
        return result

    # A block sequence whose '-' is at column col of line i (its first item may follow another
    # '- ' on the same line). Returns (items, index of the first line after it).
    def sequence(self, i, col):
        items = []
        while True:
            line = self.lines[i]
            c = col + 2
            if line[col:].rstrip(" ") == "-":
                self.err(i, "empty sequence item (null)")
            if line[c] == " ":
                self.err(i, "more than one space after '-'")
            if line.startswith("- ", c) or line[c:].rstrip(" ") == "-":
                item, i = self.sequence(i, c)
            else:
                item, i = self.scalar(i, c, col)
            items.append(item)
            j = self.skip_blank(i)
            if j >= self.n:
                return items, j
            ind = _indent(self.lines[j])
            if ind < col:
                return items, j
            if ind > col:
                self.err(j, "unexpected indentation (column %d, the sequence is at column %d)" % (ind + 1, col + 1))
            rest = self.lines[j][col:]
            if rest.startswith("- ") or rest.rstrip(" ") == "-":
                i = j
                continue
            if col == 0:
                return items, j  # an indentless sequence ends at the next top-level key
            self.err(j, "expected a '- ' sequence item, got %r" % rest[:60])

    # A scalar starting at column c of line i, inside a sequence whose '-' is at column n.
    def scalar(self, i, c, n):
        line = self.lines[i]
        ch = line[c]
        if ch == "'" or ch == '"':
            return self.quoted(i, c, n, ch == '"')
        if ch == "|":
            return self.literal(i, c, n)
        if ch == ">":
            self.err(i, "folded block scalars ('>') are not supported")
        if ch in _PLAIN_FIRST_BAD or (ch in "?:-" and (c + 1 == len(line) or line[c + 1] == " ")):
            self.err(i, "unsupported YAML construct starting with %r" % ch)
        return self.plain(i, c, n)

    def check_plain_line(self, i, s):
        if re.search(r"(^| )#", s):
            self.err(i, "comment (or ' #') in or after a plain scalar; quote the string")
        if re.search(r":( |$)", s):
            self.err(i, "': ' or a final ':' in a plain scalar (a mapping?); quote the string")

    def check_plain_is_string(self, i, value):
        for tag, rx in _IMPLICIT:
            if rx.match(value):
                self.err(i, "plain scalar %r would be read as a %s, not a string; quote it" % (value, tag))

    def plain(self, i, c, n):
        first = self.lines[i][c:]
        self.check_plain_line(i, first)
        text = first.rstrip(" ")
        start, end = i, i + 1
        while True:
            k, blanks = end, 0
            while k < self.n and _blank(self.lines[k]):
                k, blanks = k + 1, blanks + 1
            if k >= self.n or _indent(self.lines[k]) <= n:
                break
            cont = self.lines[k][_indent(self.lines[k]):]
            if cont.startswith("- ") or cont.rstrip(" ") == "-":
                self.err(k, "a line starting with '- ' continues the plain scalar of line %d "
                            "(a missing '- ' on that line?)" % (start + 1))
            self.check_plain_line(k, cont)
            text += (" " if blanks == 0 else "\n" * blanks) + cont.rstrip(" ")
            end = k + 1
        self.check_plain_is_string(start, text)
        return text, end

    def quoted(self, i, c, n, double):
        q = '"' if double else "'"
        start = i
        chunks = []
        spaces = 0  # how many of the last chunks are literal (unescaped) spaces
        line, pos = self.lines[i], c + 1
        while True:
            escaped_break = False
            while pos < len(line):  # up to the closing quote or the end of the line
                ch = line[pos]
                if ch == q and not (not double and line.startswith("''", pos)):
                    rest = line[pos + 1:]
                    if not _blank(rest):
                        self.err(i, "unexpected text after the closing quote: %r" % rest[:40])
                    return "".join(chunks), i + 1
                if not double and ch == "'":  # '' inside single quotes
                    chunks.append("'")
                    pos += 2
                elif double and ch == "\\":
                    if pos + 1 == len(line):  # escaped line break: joined without a space
                        escaped_break = True
                        pos += 1
                        break
                    e = line[pos + 1]
                    if e in _ESCAPES:
                        chunks.append(_ESCAPES[e])
                        pos += 2
                    elif e in _HEX_ESCAPES:
                        width = _HEX_ESCAPES[e]
                        digits = line[pos + 2:pos + 2 + width]
                        if not re.fullmatch("[0-9A-Fa-f]{%d}" % width, digits):
                            self.err(i, "bad \\%s escape in a double-quoted scalar" % e)
                        chunks.append(chr(int(digits, 16)))
                        pos += 2 + width
                    else:
                        self.err(i, "unknown escape \\%s in a double-quoted scalar" % e)
                    spaces = 0
                    continue
                else:
                    chunks.append(ch)
                    pos += 1
                spaces = spaces + 1 if ch == " " else 0
            # a line break inside the quotes: fold it
            if not escaped_break and spaces:
                del chunks[-spaces:]  # literal spaces before a line break are dropped
            spaces = 0
            k, blanks = i + 1, 0
            while k < self.n and _blank(self.lines[k]):
                k, blanks = k + 1, blanks + 1
            if k >= self.n:
                self.err(start, "unterminated quoted scalar")
            if _indent(self.lines[k]) <= n:
                self.err(k, "continuation of the quoted scalar of line %d is not indented" % (start + 1))
            if blanks:
                chunks.append("\n" * blanks)
            elif not escaped_break:
                chunks.append(" ")
            i, line = k, self.lines[k]
            pos = _indent(line)

    def literal(self, i, c, n):
        header = self.lines[i][c:].rstrip(" ")
        m = re.fullmatch(r"\|([+-]?)", header)
        if not m:
            self.err(i, "unsupported block scalar header %r (only |, |- and |+)" % header)
        chomp = m.group(1)
        start = i
        k, max_blank = i + 1, 0
        while k < self.n and _blank(self.lines[k]):
            max_blank = max(max_blank, len(self.lines[k]))
            k += 1
        if k >= self.n or _indent(self.lines[k]) <= n:
            self.err(start, "empty block scalar")
        indent = _indent(self.lines[k])
        if max_blank > indent:
            self.err(start, "a leading blank line of the block scalar has more spaces than its text")
        body = [""] * (k - i - 1)  # leading empty lines
        end = k
        while end < self.n:
            line = self.lines[end]
            if _blank(line) and len(line) <= indent:
                body.append(None)  # empty line (its content is decided by what follows)
            elif _indent(line) >= indent:
                body.append(line[indent:])
            else:
                break
            end += 1
        trailing = 0
        while body and body[-1] is None:
            body.pop()
            trailing += 1
        end -= trailing
        if end == self.n and not self.ends_with_newline:
            self.err(end - 1, "block scalar at the end of a file without a final newline")
        text = "\n".join("" if s is None else s for s in body)
        if chomp == "":
            text += "\n"
        elif chomp == "+":
            text += "\n" + "\n" * trailing
        return text, end


def parse_yaml_subset(text, name="<yaml>"):
    """Parse the YAML subset described in the module docstring; raise YamlSubsetError otherwise."""
    return _Parser(text, name).document()


# (file name, bad line, repaired line): defects of the source, each repaired where found.
KNOWN_FIXES = [
    ("trivia.yml",
     '- In a game of bingo, which number is represented by the phrase "two little ducks"?',
     '- - In a game of bingo, which number is represented by the phrase "two little ducks"?'),
]


def apply_fixes(name, text, log):
    lines = text.split("\n")
    for fname, bad, good in KNOWN_FIXES:
        if fname != name:
            continue
        hits = [i for i, line in enumerate(lines) if line == bad]
        if len(hits) > 1:
            raise YamlSubsetError("%s: the known defect %r occurs %d times" % (name, bad[:40], len(hits)))
        for i in hits:
            lines[i] = good
            log("repaired %s line %d: %r -> %r" % (name, i + 1, bad[:24] + "...", good[:26] + "..."))
    return "\n".join(lines)


def conversations_of(name, doc):
    if not isinstance(doc, dict) or set(doc) != {"categories", "conversations"}:
        raise YamlSubsetError("%s: expected exactly the keys 'categories' and 'conversations', got %s"
                              % (name, sorted(doc) if isinstance(doc, dict) else type(doc).__name__))
    cats, convs = doc["categories"], doc["conversations"]
    if not all(isinstance(s, str) for s in cats):
        raise YamlSubsetError("%s: 'categories' must be a list of strings" % name)
    for k, conv in enumerate(convs):
        if not isinstance(conv, list) or not all(isinstance(s, str) for s in conv):
            raise YamlSubsetError("%s: conversation %d is not a list of strings: %r"
                                  % (name, k + 1, str(conv)[:80]))
    return cats, convs


def yaml_inputs(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".yml"))
            if not found:
                raise SystemExit("%s: error: no .yml files in %s" % (PROG, p))
            files += found
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise SystemExit("%s: error: no such file or directory: %s" % (PROG, p))
    return sorted(files, key=lambda f: (os.path.basename(f), f))


def write_atomic(path, rows):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for line in rows:
                f.write(line + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", metavar="YML_OR_DIR")
    ap.add_argument("--out-dir", default="data/chatterbot")
    ap.add_argument("--compare-pyyaml", action="store_true",
                    help="also load each file with PyYAML and require an identical result")
    args = ap.parse_args(argv)

    def log(msg):
        print("%s: %s" % (PROG, msg), file=sys.stderr)

    if args.compare_pyyaml:
        try:
            import yaml
        except ImportError:
            raise SystemExit("%s: error: --compare-pyyaml needs PyYAML (pip install pyyaml)" % PROG)

    files = yaml_inputs(args.inputs)
    seen, rows = set(), []
    stats = dict(conversations=0, duplicates=0, cut_at_empty=0, dropped_final_user=0, too_short=0)
    for path in files:
        name = os.path.basename(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise SystemExit("%s: error: cannot read %s: %s" % (PROG, path, e))
        try:
            text = apply_fixes(name, text, log)
            doc = parse_yaml_subset(text, name)
            if args.compare_pyyaml:
                ref = yaml.safe_load(text)
                if ref != doc:
                    raise YamlSubsetError("%s: this parser and PyYAML disagree" % name)
                log("%s: identical to PyYAML" % name)
            cats, convs = conversations_of(name, doc)
        except YamlSubsetError as e:
            raise SystemExit("%s: error: %s" % (PROG, e))
        for conv in convs:
            stats["conversations"] += 1
            turns = [s.strip() for s in conv]
            if "" in turns:
                turns = turns[:turns.index("")]
                stats["cut_at_empty"] += 1
            if len(turns) % 2:
                turns.pop()
                stats["dropped_final_user"] += 1
            if len(turns) < 2:
                stats["too_short"] += 1
                continue
            messages = [{"role": "user" if t % 2 == 0 else "assistant", "content": s}
                        for t, s in enumerate(turns)]
            line = json.dumps({"messages": messages}, ensure_ascii=False)
            if line in seen:
                stats["duplicates"] += 1
                continue
            seen.add(line)
            rows.append((hashlib.sha256(line.encode("utf-8")).hexdigest(), line))

    rows.sort()
    train = [line for h, line in rows if int(h, 16) % VALID_MOD != 0]
    valid = [line for h, line in rows if int(h, 16) % VALID_MOD == 0]
    os.makedirs(args.out_dir, exist_ok=True)
    write_atomic(os.path.join(args.out_dir, "train.jsonl"), train)
    write_atomic(os.path.join(args.out_dir, "valid.jsonl"), valid)
    turns = sum(len(json.loads(line)["messages"]) for h, line in rows)
    print("%s: %d files, %d conversations -> %d rows, %d turns (dropped: %d duplicate rows, %d "
          "unanswered final user turns, %d cut at an empty turn, %d too short); train.jsonl %d rows, "
          "valid.jsonl %d rows, in %s"
          % (PROG, len(files), stats["conversations"], len(rows), turns, stats["duplicates"],
             stats["dropped_final_user"], stats["cut_at_empty"], stats["too_short"],
             len(train), len(valid), args.out_dir))


if __name__ == "__main__":
    main()
