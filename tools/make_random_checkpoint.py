#!/usr/bin/env python3
"""Write a random-weight Hugging Face Llama checkpoint with bounded memory.

Usage:
  /work/refvenv/bin/python tools/make_random_checkpoint.py --shape llama-7b --dtype float16 --output DIR
      [--seed 0] [--layers N] [--vocab V] [--hidden H --intermediate I --heads A --kv-heads K]
      [--tie | --no-tie] [--max-shard-size 2GB] [--std 0.02]
      [--tokenizer bytes|none | --tokenizer-from HF_DIR] [--config-style transformers5|legacy]
  tools/make_random_checkpoint.py --list

Writes DIR/config.json (+ generation_config.json), the weights as safetensors
(model.safetensors, or model-0000i-of-0000n.safetensors shards of at most --max-shard-size
plus model.safetensors.index.json, as transformers' save_pretrained names and fills them),
and by default a small byte-level BPE tokenizer (256 byte tokens + specials, ChatML template).

Weights: every matrix (embeddings, q/k/v/o, gate/up/down, lm_head) is normal(0, std) drawn in
float32 and rounded to --dtype (round-to-nearest-even); RMSNorm weights are 1.0. Each tensor's
random stream is seeded from (seed, tensor name), so the values do not depend on sharding.

Memory: tensors are generated and written chunk by chunk (about 64 MiB of float32 at a time)
straight into the safetensors files; nothing model-sized is ever held in memory, so a
13 GB llama-7b checkpoint is written with ~170 MB peak RSS. Only numpy (and tokenizers for
the default tokenizer) is used; no torch, no transformers.
"""
import argparse
import json
import os
import re
import shutil
import struct
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from refstack import check_versions  # noqa: E402

SHAPES = {
    # name: hidden, intermediate, layers, heads, kv_heads, vocab, tie, max_pos, rope_theta, rms_eps
    "llama-7b": (4096, 11008, 32, 32, 32, 32000, False, 4096, 10000.0, 1e-5),
    "llama-13b": (5120, 13824, 40, 40, 40, 32000, False, 4096, 10000.0, 1e-5),
    "tinyllama-1.1b": (2048, 5632, 22, 32, 4, 32000, False, 2048, 10000.0, 1e-5),
    "llama-125m": (768, 2048, 12, 12, 12, 32000, False, 2048, 10000.0, 1e-5),
    "llama-small-512": (512, 1376, 8, 8, 8, 32000, False, 2048, 10000.0, 1e-5),  # MACHINE.md bench shape
    "smollm2-135m": (576, 1536, 30, 9, 3, 49152, True, 8192, 100000.0, 1e-5),
    "tiny": (64, 176, 2, 4, 2, 512, False, 512, 10000.0, 1e-5),
    # in_features not a multiple of 64, partial last 64-blocks and 256-blocks (NF4 edge cases)
    "tiny-odd": (72, 123, 2, 4, 2, 301, False, 512, 10000.0, 1e-5),
}

DTYPES = {"float32": ("F32", 4), "float16": ("F16", 2), "bfloat16": ("BF16", 2)}
CHUNK_ELEMS = 16 * 1024 * 1024  # 64 MiB of float32 per generation step

PINNED = {"tokenizers": "0.23.3"}  # config.json mimics transformers 5.23.0 (checked against it)


CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def parse_size(s):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", s, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r} (e.g. 2GB, 500MB, 1GiB)")
    v, unit = float(m.group(1)), (m.group(2) or "B").upper()
    mult = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}[unit]
    return int(v * mult)


def to_dtype_bytes(x32, dtype):
    """float32 ndarray -> little-endian bytes of dtype (round to nearest even)."""
    if dtype == "float32":
        return x32.astype("<f4", copy=False).tobytes()
    if dtype == "float16":
        return x32.astype("<f2").tobytes()
    u = x32.view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype("<u2")
    return r.tobytes()


def tensor_list(hidden, inter, layers, heads, kv, vocab, tie):
    """(name, shape, kind) in the order of LlamaForCausalLM.state_dict()."""
    hd = hidden // heads
    out = [("model.embed_tokens.weight", (vocab, hidden), "normal")]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", (heads * hd, hidden), "normal"),
            (p + "self_attn.k_proj.weight", (kv * hd, hidden), "normal"),
            (p + "self_attn.v_proj.weight", (kv * hd, hidden), "normal"),
            (p + "self_attn.o_proj.weight", (hidden, heads * hd), "normal"),
            (p + "mlp.gate_proj.weight", (inter, hidden), "normal"),
            (p + "mlp.up_proj.weight", (inter, hidden), "normal"),
            (p + "mlp.down_proj.weight", (hidden, inter), "normal"),
            (p + "input_layernorm.weight", (hidden,), "ones"),
            (p + "post_attention_layernorm.weight", (hidden,), "ones"),
        ]
    out.append(("model.norm.weight", (hidden,), "ones"))
    if not tie:
        out.append(("lm_head.weight", (vocab, hidden), "normal"))
    return out


def write_tensor_data(f, name, shape, kind, dtype, seed, std):
    n = int(np.prod(shape))
    if kind == "ones":
        f.write(to_dtype_bytes(np.ones(n, dtype=np.float32), dtype))
        return
    rng = np.random.Generator(np.random.PCG64([seed, zlib.crc32(name.encode())]))
    done = 0
    while done < n:
        m = min(CHUNK_ELEMS, n - done)
        x = rng.standard_normal(m, dtype=np.float32)
        x *= np.float32(std)
        f.write(to_dtype_bytes(x, dtype))
        done += m


def write_shard(path, entries, dtype, seed, std):
    """entries: list of (name, shape, kind). Layout as the safetensors library writes it:
    8-byte header length, JSON header (__metadata__ first, tensors in data order, sorted by name),
    padded with spaces to a multiple of 8, then the data."""
    st_dtype, esz = DTYPES[dtype]
    entries = sorted(entries, key=lambda e: e[0])
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape, _ in entries:
        nb = int(np.prod(shape)) * esz
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [off, off + nb]}
        off += nb
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape, kind in entries:
            write_tensor_data(f, name, shape, kind, dtype, seed, std)
        assert f.tell() == 8 + len(hb) + off, "size mismatch"
    os.replace(tmp, path)
    return off


def write_byte_tokenizer(out):
    """A valid byte-level BPE tokenizer with no merges: 256 byte tokens plus specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, AddedToken
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate(specials)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                   "unk_token": "<unk>", "pad_token": "</s>", "model_max_length": 2048,
                   "chat_template": CHATML_TEMPLATE}, f, indent=2)
        f.write("\n")
    return len(vocab)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--shape", choices=sorted(SHAPES), help="named shape")
    ap.add_argument("--list", action="store_true", help="list the named shapes and exit")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float16")
    ap.add_argument("--output", help="output dir (created; existing weight files in it are replaced)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--layers", type=int, help="override number of layers (small-scale tests)")
    ap.add_argument("--vocab", type=int)
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--intermediate", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--kv-heads", type=int)
    tie = ap.add_mutually_exclusive_group()
    tie.add_argument("--tie", dest="tie", action="store_true", default=None, help="tie lm_head to embeddings")
    tie.add_argument("--no-tie", dest="tie", action="store_false")
    ap.add_argument("--max-shard-size", type=parse_size, default=parse_size("2GB"),
                    help="max bytes per shard (default 2GB = 2e9 bytes, as transformers counts)")
    tk = ap.add_mutually_exclusive_group()
    tk.add_argument("--tokenizer", choices=["bytes", "none"], default="bytes")
    tk.add_argument("--tokenizer-from", help="copy tokenizer files from this HF dir")
    ap.add_argument("--config-style", choices=["transformers5", "legacy"], default="transformers5",
                    help="transformers5: config.json as transformers 5.23 writes it (rope_parameters, dtype); "
                         "legacy: as Llama-2 hub checkpoints (rope_theta, torch_dtype)")
    ap.add_argument("--allow-other-versions", action="store_true")
    args = ap.parse_args()

    if args.list:
        print(f"{'shape':16} hidden inter layers heads kv vocab tie  params")
        for k, (h, i, l, a, kv, v, t, *_ ) in SHAPES.items():
            n = sum(int(np.prod(s)) for _, s, _ in tensor_list(h, i, l, a, kv, v, t))
            print(f"{k:16} {h:6} {i:5} {l:6} {a:5} {kv:2} {v:5} {str(t):5} {n / 1e9:.3f} B")
        return
    if not args.shape or not args.output:
        ap.error("--shape and --output are required")

    h, inter, layers, heads, kv, vocab, tie_, max_pos, rope_theta, eps = SHAPES[args.shape]
    h = args.hidden or h
    inter = args.intermediate or inter
    layers = args.layers if args.layers is not None else layers
    heads = args.heads or heads
    kv = args.kv_heads or kv
    vocab = args.vocab or vocab
    tie_ = tie_ if args.tie is None else args.tie
    if h % heads or heads % kv:
        sys.exit(f"error: hidden {h} must be divisible by heads {heads}, and heads by kv heads {kv}")

    needed = ["tokenizers"] if args.tokenizer == "bytes" and not args.tokenizer_from else []
    check_versions({pkg: PINNED[pkg] for pkg in needed}, args.allow_other_versions)

    out = args.output
    os.makedirs(out, exist_ok=True)
    for fn in os.listdir(out):
        if re.fullmatch(r"model(-\d{5}-of-\d{5})?\.safetensors(\.part)?|model\.safetensors\.index\.json", fn):
            os.remove(os.path.join(out, fn))

    tensors = tensor_list(h, inter, layers, heads, kv, vocab, tie_)
    _, esz = DTYPES[args.dtype]
    total_params = sum(int(np.prod(s)) for _, s, _ in tensors)

    # shard assignment in state-dict order, like huggingface_hub.split_torch_state_dict_into_shards
    shards, cur, cur_size = [], [], 0
    for t in tensors:
        nb = int(np.prod(t[1])) * esz
        if cur and cur_size + nb > args.max_shard_size:
            shards.append(cur)
            cur, cur_size = [], 0
        cur.append(t)
        cur_size += nb
    shards.append(cur)

    # config.json (+ generation_config.json)
    # Written by hand (importing transformers would pull in torch, ~700 MB RSS); the
    # transformers5 style is byte-identical to LlamaConfig(...).save_pretrained() and
    # GenerationConfig.from_model_config(cfg).save_pretrained() in transformers 5.23.
    if args.config_style == "transformers5":
        cfg = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
               "bos_token_id": 1, "dtype": args.dtype, "eos_token_id": 2, "head_dim": h // heads,
               "hidden_act": "silu", "hidden_size": h, "initializer_range": args.std,
               "intermediate_size": inter, "max_position_embeddings": max_pos, "mlp_bias": False,
               "model_type": "llama", "num_attention_heads": heads, "num_hidden_layers": layers,
               "num_key_value_heads": kv, "pad_token_id": None, "pretraining_tp": 1, "rms_norm_eps": eps,
               "rope_parameters": {"rope_theta": rope_theta, "rope_type": "default"},
               "tie_word_embeddings": tie_, "transformers_version": "5.23.0", "use_cache": True,
               "vocab_size": vocab}
        gen = {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "output_attentions": False,
               "output_hidden_states": False, "transformers_version": "5.23.0", "use_cache": True}
        for fn, d in [("config.json", cfg), ("generation_config.json", gen)]:
            with open(os.path.join(out, fn), "w", encoding="utf-8") as f:
                f.write(json.dumps(d, indent=2, sort_keys=True) + "\n")
    else:
        cfg = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
               "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": h,
               "initializer_range": args.std, "intermediate_size": inter, "max_position_embeddings": max_pos,
               "mlp_bias": False, "model_type": "llama", "num_attention_heads": heads,
               "num_hidden_layers": layers, "num_key_value_heads": kv, "pretraining_tp": 1,
               "rms_norm_eps": eps, "rope_scaling": None, "rope_theta": rope_theta,
               "tie_word_embeddings": tie_, "torch_dtype": args.dtype, "transformers_version": "4.40.0",
               "use_cache": True, "vocab_size": vocab}
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        with open(os.path.join(out, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": 1, "eos_token_id": 2, "transformers_version": "4.40.0"}, f, indent=2)
            f.write("\n")

    # tokenizer
    if args.tokenizer_from:
        copied = []
        for fn in ["tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "added_tokens.json"]:
            p = os.path.join(args.tokenizer_from, fn)
            if os.path.exists(p):
                shutil.copy(p, os.path.join(out, fn))
                copied.append(fn)
        print(f"tokenizer: copied {copied} from {args.tokenizer_from}")
    elif args.tokenizer == "bytes":
        nv = write_byte_tokenizer(out)
        if nv > vocab:
            print(f"warning: tokenizer has {nv} tokens but vocab is {vocab}", file=sys.stderr)

    # weights
    t0 = time.time()
    n = len(shards)
    weight_map, total_size = {}, 0
    for i, entries in enumerate(shards):
        fn = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        total_size += write_shard(os.path.join(out, fn), entries, args.dtype, args.seed, args.std)
        for name, _, _ in entries:
            weight_map[name] = fn
        print(f"  wrote {fn}: {len(entries)} tensors ({time.time() - t0:.1f}s)", flush=True)
    if n > 1:
        index = {"metadata": {"total_parameters": total_params, "total_size": total_size},
                 "weight_map": weight_map}
        with open(os.path.join(out, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    try:
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except Exception:
        rss = float("nan")
    print(f"{args.shape}: hidden {h}, inter {inter}, {layers} layers, {heads} heads / {kv} kv, vocab {vocab}, "
          f"tie {tie_}, {args.dtype}: {total_params / 1e6:.1f} M params, {total_size / 1e9:.3f} GB in {n} file(s), "
          f"{time.time() - t0:.1f}s, peak RSS {rss:.0f} MiB -> {out}")


if __name__ == "__main__":
    main()
