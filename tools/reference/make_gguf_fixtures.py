#!/usr/bin/env python3
"""Writes the GGUF test fixtures under Tests/Fixtures/gguf/ from the real reference libraries.

- Dequantization: for each GGML type our Swift reader dequantizes, a few rows of blocks and the
  float32 values `gguf.quants.dequantize` (gguf-py, a numpy port of ggml's dequantize_row_*) gives
  for them. Types gguf-py can quantize (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) get rows
  quantized from random normals plus one row of random raw blocks; K-quants (which gguf-py cannot
  quantize) get random raw blocks with sane f16 scales.
- Files made by gguf-py's GGUFWriter: tiny-llama.gguf (SentencePiece-style "llama" tokenizer,
  every metadata value type, tensors of several types, alignment 64) and tiny-gpt2.gguf (byte-level
  "gpt2" tokenizer with tokenizer.ggml.pre = "qwen2"), plus what transformers' GGUF tokenizer
  converter makes of each (<stem>.tokenizer.json / <stem>.tokenizer_config.json), the target of
  our GGUFTokenizerExport.

Pinned: gguf 0.19.0, numpy 2.4.x, transformers 5.23.0, tokenizers 0.23.x (checked below).
Run with the reference venv:  /work/refvenv/bin/python tools/reference/make_gguf_fixtures.py
`swift test` never runs Python; re-run this script only when the fixtures must change.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

from refstack import INSTALL_PINNED, check_versions

GGUF_VERSION = "0.19.0"
TRANSFORMERS_VERSION = "5.23.0"
PINNED = {"gguf": GGUF_VERSION, "transformers": TRANSFORMERS_VERSION, "numpy": "2.4.*"}

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "gguf"


def git_hash():
    try:
        return subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"], stderr=subprocess.DEVNULL).decode().strip()
    except Exception:
        return "uncommitted"


rng = np.random.default_rng(20240607)


def f16_scales(n, low=1e-3, high=0.2, signed=False):
    """Random f16 scale bytes of magnitude in [low, high), optionally with random sign."""
    v = np.exp(rng.uniform(np.log(low), np.log(high), size=n)).astype(np.float32)
    if signed:
        v *= rng.choice([-1.0, 1.0], size=n).astype(np.float32)
    return v.astype(np.float16)


def raw_blocks(qtype, n_blocks):
    """Random bytes for n_blocks blocks of qtype with every f16 scale field replaced by a sane value."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)

    def put_f16(offset, signed):
        b[:, offset:offset + 2] = f16_scales(n_blocks, signed=signed).view(np.uint8).reshape(n_blocks, 2)

    if qtype in (T.Q4_0, T.Q5_0, T.Q8_0):
        put_f16(0, signed=True)
    elif qtype in (T.Q4_1, T.Q5_1):
        put_f16(0, signed=False)
        put_f16(2, signed=True)      # m is the block minimum: either sign
    elif qtype == T.Q2_K:
        put_f16(80, signed=False)
        put_f16(82, signed=False)
    elif qtype == T.Q3_K:
        put_f16(108, signed=True)
    elif qtype in (T.Q4_K, T.Q5_K):
        put_f16(0, signed=False)
        put_f16(2, signed=False)
    elif qtype == T.Q6_K:
        put_f16(208, signed=True)
    else:
        raise ValueError(qtype)
    # Edge cases in the first block: a subnormal f16 scale; in the second (if any): a zero scale.
    if qtype in (T.Q4_0, T.Q5_0, T.Q8_0, T.Q4_1, T.Q5_1, T.Q4_K, T.Q5_K):
        b[0, 0:2] = np.array([0x0003], dtype=np.uint16).view(np.uint8)
        if n_blocks > 1:
            b[1, 0:2] = 0
    return b


def dequant(qtype, blocks):
    return gguf.quants.dequantize(blocks, qtype).astype(np.float32, copy=False)


def dequant_cases():
    """[(name, qtype, rows, row_length, bytes (rows, row_bytes) uint8, expected (rows, row_length) f32, source)]"""
    cases = []
    # Float types: values with awkward row length 7, including specials.
    special = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1e-05, 5.96e-08, np.inf, -np.inf, np.nan, 1e-40, 3.0e38], dtype=np.float32)
    x = np.concatenate([special, rng.standard_normal(21 - len(special)).astype(np.float32)]).reshape(3, 7)
    cases.append(("F32", T.F32, x.view(np.uint8).reshape(3, 28), x.copy(), "random normals and specials"))
    with np.errstate(over="ignore"):  # 3e38 -> inf in float16 is intended
        h = x.astype(np.float16)
    cases.append(("F16", T.F16, h.view(np.uint8).reshape(3, 14), dequant(T.F16, h.view(np.uint8)), "float16 of the F32 case"))
    bf = gguf.quants.quantize(x, T.BF16)
    cases.append(("BF16", T.BF16, bf, dequant(T.BF16, bf), "gguf.quants.quantize BF16 of the F32 case"))

    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        row_length = 3 * block_size
        w = (rng.standard_normal((3, row_length)) * rng.uniform(0.01, 2.0, size=(3, 1))).astype(np.float32)
        w[1, :block_size] = 0.0            # an all-zero block (d = 0)
        w[2, block_size:2 * block_size] += 5.0  # a block far from zero (Q4_1/Q5_1 minimum)
        q = gguf.quants.quantize(w, qtype)
        raw = raw_blocks(qtype, 3).reshape(1, 3 * type_size)
        blocks = np.concatenate([q, raw], axis=0)
        cases.append((qtype.name, qtype, blocks, dequant(qtype, blocks), "3 rows gguf.quants.quantize of scaled normals + 1 row random raw blocks"))

    for qtype in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K):
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        blocks = raw_blocks(qtype, 4).reshape(2, 2 * type_size)
        cases.append((qtype.name, qtype, blocks, dequant(qtype, blocks), "2 rows of 2 random raw super-blocks with sane f16 scales"))
    return cases


# ---------------------------------------------------------------- tokenizers

CORPUS = """The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.
It's a truth universally acknowledged that they'll say we've done what I'd do, and you're right.
def tokenize(text): return [t for t in text.split() if t] # code, 12345 and 3.14159
Naïve café owners in Zürich serve crème brûlée. 日本語のテキストも少しあります。 Emoji: 🙂🚀!
Numbers 2024, 100000 and versions v1.2.3 appear in the the the text text text again and again.
"""


def learn_bpe(words, n_merges):
    """Plain BPE over a {tuple_of_symbols: count} table; returns the merges in order."""
    words = Counter(words)
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for word, count in words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return merges


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_tiny_llama(path):
    """A SentencePiece-BPE style vocabulary (like Llama-2 / TinyLlama) with scores and byte fallback."""
    words = ["\u2581" + w for w in CORPUS.split()]
    merges = learn_bpe([tuple(w) for w in words], 120)
    chars = sorted({c for w in words for c in w})
    merged = []
    for a, b in merges:
        if a + b not in merged:
            merged.append(a + b)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [2, 3, 3] + [6] * 256
    scores = [0.0] * len(tokens)
    pieces = merged + [c for c in chars if c not in merged]
    for i, p in enumerate(pieces):
        tokens.append(p)
        types.append(1)
        scores.append(-float(i))
    tokens += ["<|user|>", "<|assistant|>"]
    types += [4, 3]
    scores += [0.0, 0.0]

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_custom_alignment(64)
    w.add_context_length(2048)
    w.add_block_count(1)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}")
    # One value of every scalar type and a few arrays, to test the metadata reader.
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float32("test.f32", 0.1)
    w.add_float64("test.f64", 0.1)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo ✓")
    w.add_array("test.int_array", [1, -2, 3])
    w.add_array("test.float_array", [0.5, -1.25])
    w.add_array("test.string_array", ["a", "", "ß"])
    w.add_array("test.bool_array", [True, False])

    tensors = {}
    x = (rng.standard_normal((4, 64))).astype(np.float32)
    tensors["norm.weight"] = (T.F32, x[0].copy())
    tensors["f16.weight"] = (T.F16, x.astype(np.float16))
    tensors["q8.weight"] = (T.Q8_0, gguf.quants.quantize(x, T.Q8_0))
    tensors["q41.weight"] = (T.Q4_1, gguf.quants.quantize(x.reshape(2, 2, 64), T.Q4_1))
    tensors["q4k.weight"] = (T.Q4_K, raw_blocks(T.Q4_K, 3).reshape(3, 144))
    tensors["q6k.weight"] = (T.Q6_K, raw_blocks(T.Q6_K, 2).reshape(2, 1, 210))
    expected = {}
    for name, (qtype, data) in tensors.items():
        if qtype in (T.F32, T.F16):
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=qtype)
        expected[name] = dequant(qtype, data.view(np.uint8) if qtype not in (T.F32, T.F16) else data.view(np.uint8)).reshape(-1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected


def write_tiny_gpt2(path):
    """A byte-level BPE vocabulary (like Qwen2 / SmolLM2) with control and user-defined tokens."""
    spell = bytes_to_unicode()
    pieces = re.findall(r"'s|'t|'re|'ve|'m|'ll|'d| ?\w+| ?\d+| ?[^\s\w]+|\s+", CORPUS)
    words = [tuple(spell[b] for b in p.encode("utf-8")) for p in pieces]
    merges = learn_bpe(words, 150)
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [3, 3, 3]
    for b in range(256):
        tokens.append(spell[b])
        types.append(1)
    for a, b in merges:
        if a + b not in tokens:
            tokens.append(a + b)
            types.append(1)
    # user-defined (4), a control token spelled outside the byte alphabet (transformers skips it),
    # and an unused (5) token.
    tokens += ["<think>", "<|fim prefix|>", "<unused0>"]
    types += [4, 3, 5]

    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_context_length(4096)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{a} {b}" for a, b in merges])
    w.add_bos_token_id(0)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)
    w.add_add_bos_token(False)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    w.add_tensor("token_embd.weight", rng.standard_normal((len(tokens), 8)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def transformers_tokenizer(gguf_path, stem):
    """What transformers' GGUF converter makes of the file: tokenizer.json and tokenizer_config.json."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            data = json.load(open(os.path.join(d, name), encoding="utf-8"))
            with open(OUT / f"{stem}.{name}", "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False, indent=1)
                f.write("\n")


def main():
    check_versions(PINNED, hint=INSTALL_PINNED)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    manifest = {
        "generator": "tools/reference/make_gguf_fixtures.py",
        "gguf_version": GGUF_VERSION,
        "numpy_version": np.__version__,
        "transformers_version": TRANSFORMERS_VERSION,
        "git": git_hash(),
        "dequantize": [],
        "files": [],
    }
    for name, qtype, blocks, expected, source in dequant_cases():
        blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
        expected = np.ascontiguousarray(expected, dtype=np.float32)
        rows, row_length = expected.shape
        assert blocks.shape[0] == rows
        stem = name.lower()
        blocks.tofile(OUT / f"{stem}.blocks")
        expected.astype("<f4").tofile(OUT / f"{stem}.expected.f32")
        manifest["dequantize"].append({
            "type": name, "type_id": int(qtype), "rows": rows, "row_length": row_length,
            "row_bytes": int(blocks.shape[1]), "blocks": f"{stem}.blocks", "expected": f"{stem}.expected.f32",
            "source": source,
        })

    expected = write_tiny_llama(OUT / "tiny-llama.gguf")
    offset = 0
    entries = []
    with open(OUT / "tiny-llama.expected.f32", "wb") as f:
        for name, values in expected.items():
            values.astype("<f4").tofile(f)
            entries.append({"name": name, "offset": offset, "count": int(values.size)})
            offset += int(values.size)
    manifest["files"].append({"gguf": "tiny-llama.gguf", "expected": "tiny-llama.expected.f32", "tensors": entries})
    transformers_tokenizer(OUT / "tiny-llama.gguf", "tiny-llama")

    write_tiny_gpt2(OUT / "tiny-gpt2.gguf")
    manifest["files"].append({"gguf": "tiny-gpt2.gguf", "tensors": []})
    transformers_tokenizer(OUT / "tiny-gpt2.gguf", "tiny-gpt2")

    with open(OUT / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total} bytes, to {OUT}")
    assert total < 200_000, "fixtures must stay under 200 KB"


if __name__ == "__main__":
    main()
