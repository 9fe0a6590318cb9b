#!/usr/bin/env python3
"""Check a 4-bit (bitsandbytes NF4 + double quant) Hugging Face checkpoint against the
reference stack (torch 2.15.0, bitsandbytes 0.50.2, transformers 5.23.0).

Usage:
  /work/refvenv/bin/python tools/check_quantized.py --quantized OUT_DIR --gguf MODEL.gguf
  /work/refvenv/bin/python tools/check_quantized.py --quantized OUT_DIR --source HF_DIR
  /work/refvenv/bin/python tools/check_quantized.py --write-reference REF_DIR --gguf MODEL.gguf [--dtype float16]
      (writes transformers+bitsandbytes' own 4-bit checkpoint of the source, then checks it)
  options: --prompt TEXT (repeatable; logits comparison), --question TEXT, --expect SUBSTR,
           --max-new-tokens 40, --logits-tol 1e-3, --no-generate, --verbose, --json REPORT

Checks (every one must pass for exit code 0):
  a. load:       AutoModelForCausalLM.from_pretrained(OUT_DIR) succeeds (4-bit bnb on CPU);
                 config.json quantization_config says nf4 + double quant + uint8 storage;
                 every linear that transformers would quantize is a Linear4bit.
  b. bytes:      the source (GGUF dequantized by transformers' gguf_file= loader, or the HF
                 dir) is loaded in float32, each tensor is rounded to the dtype recorded in
                 OUT_DIR's quant_state JSON, every linear is quantized with
                 bnb.functional.quantize_4bit(w, blocksize=64, quant_type="nf4",
                 compress_statistics=True) and the result is compared byte for byte with
                 OUT_DIR's tensors: weight (packed nibbles), weight.absmax (8-bit),
                 weight.nested_absmax, weight.quant_map, weight.nested_quant_map,
                 nested_offset and the whole quant_state JSON. Unquantized tensors
                 (embeddings, norms, untied lm_head) are compared with the rounded source.
                 The tensor name set must be exactly what transformers writes.
  tok.           OUT_DIR's tokenizer encodes sample strings like the source tokenizer and
                 renders the same chat template text.
  c. logits:     OUT_DIR's model (Linear4bit) vs a plain float32 model whose linears hold
                 bnb's quantize->dequantize_4bit weights: max |diff| <= --logits-tol.
                 (Also prints, for information, the distance to the unquantized source.)
  d. generate:   greedy decoding (up to --max-new-tokens) of a ChatML question rendered
                 with OUT_DIR's chat template; prints the answer; the token ids must equal
                 those of the reference model from (c); --expect SUBSTR must occur if given.

How the 4-bit model is run on this CPU: bitsandbytes 0.50.2's Linear4bit, in eval mode
under no_grad on AVX512-BF16 CPUs, repacks the weight in place into a bf16 inference layout
and fails when in_features % 64 != 0. This script therefore puts the loaded model in
train() mode right after loading (Llama has no dropout at attention_dropout=0, so train mode
computes the same function), where Linear4bit dequantizes the weight to float32 (nested
absmax -> absmax -> code*absmax) and runs a plain matmul. Nothing is run in eval mode.
Non-quantized parameters (embeddings, norms) are upcast in place to float32 after loading,
so both models compute in float32 and the difference is float32 round-off only.

Memory: one float32 copy of the source model plus the 4-bit model are held at once (about
6 bytes per parameter; fine for models up to ~2-3 B parameters on a 24 GiB machine).
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from refstack import check_versions, quiet_reference_stack  # noqa: E402

quiet_reference_stack()

PINNED = {
    "torch": "2.15.0",
    "bitsandbytes": "0.50.2",
    "transformers": "5.23.0",
    "safetensors": None,  # any
    "tokenizers": None,
    "gguf": "0.19.0",
}


ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                             formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
ap.add_argument("--quantized", help="4-bit HF checkpoint dir to check (default: the --write-reference dir)")
src = ap.add_mutually_exclusive_group(required=True)
src.add_argument("--gguf", help="source GGUF file")
src.add_argument("--source", help="source Hugging Face checkpoint dir")
ap.add_argument("--prompt", action="append", help="prompt for the logits comparison (repeatable)")
ap.add_argument("--question", default="What is the capital of France?",
                help="user message for the greedy generation check")
ap.add_argument("--expect", default=None, help="substring the generated answer must contain (e.g. Paris)")
ap.add_argument("--max-new-tokens", type=int, default=40)
ap.add_argument("--logits-tol", type=float, default=1e-3, help="max abs logits diff allowed in (c)")
ap.add_argument("--no-generate", action="store_true", help="skip (d)")
ap.add_argument("--verbose", action="store_true", help="print a line for every linear, not only mismatches")
ap.add_argument("--json", help="write a machine-readable report here")
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--allow-other-versions", action="store_true")
ap.add_argument("--write-reference", metavar="OUT_DIR",
                help="first write transformers+bitsandbytes' own 4-bit checkpoint of the source to OUT_DIR "
                     "(GGUF: dequantized to float32, rounded to --dtype, saved as an HF dir, reloaded with "
                     "BitsAndBytesConfig(nf4, double quant, compute float32), save_pretrained; HF dir: "
                     "from_pretrained with that config, save_pretrained), then check it")
ap.add_argument("--dtype", choices=["float16", "bfloat16", "float32"],
                help="storage dtype for --write-reference (default: float16 for GGUF, the source's dtype for HF)")
args = ap.parse_args()
if not args.quantized and not args.write_reference:
    ap.error("give --quantized DIR (or --write-reference OUT_DIR)")

versions = check_versions(PINNED, args.allow_other_versions)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as bnbF  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

try:
    transformers.utils.logging.disable_progress_bar()
except Exception:
    pass
torch.set_num_threads(max(1, args.threads))
torch.manual_seed(0)

DEFAULT_PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
]
TOKENIZER_SAMPLES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.  Multiple   spaces\tand\ttabs\n\nnewlines",
    "Ünïcödé: naïve café, 日本語のテキスト, emoji 🙂🚀, Ελληνικά",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "   leading spaces and trailing   ",
    "1234567890 3.14159 x=y+z; if (a<b) { return c; }",
]
QUANT_SUFFIXES = ["weight", "weight.absmax", "weight.quant_map", "weight.nested_absmax",
                  "weight.nested_quant_map", "weight.quant_state.bitsandbytes__nf4"]

results = []  # (check, ok, detail)
report = {"versions": versions, "quantized": args.quantized, "source": args.gguf or args.source}


def record(name, ok, detail=""):
    results.append((name, bool(ok), detail))
    print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)


def section(title):
    print("\n=== " + title + " ===", flush=True)


def finish():
    section("summary")
    for name, ok, detail in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    allok = bool(results) and all(ok for _, ok, _ in results)
    print("\nOVERALL: " + ("PASS" if allok else "FAIL"), flush=True)
    if args.json:
        report["checks"] = [{"check": n, "ok": o, "detail": d} for n, o, d in results]
        report["overall"] = "PASS" if allok else "FAIL"
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    sys.exit(0 if allok else 1)


# ---------------------------------------------------------------- DIR's raw tensors
class Tensors:
    """Lazy access to the tensors of a (possibly sharded) safetensors checkpoint."""

    def __init__(self, d):
        self.handles = {}
        self.where = {}
        idx = os.path.join(d, "model.safetensors.index.json")
        if os.path.exists(idx):
            with open(idx) as f:
                wm = json.load(f)["weight_map"]
            files = sorted(set(wm.values()))
        elif os.path.exists(os.path.join(d, "model.safetensors")):
            files = ["model.safetensors"]
        else:
            raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {d}")
        for fn in files:
            h = safe_open(os.path.join(d, fn), framework="pt")
            self.handles[fn] = h
            for k in h.keys():
                if k in self.where:
                    raise ValueError(f"tensor {k} in two shards")
                self.where[k] = fn
        if os.path.exists(idx):
            missing = [k for k in wm if k not in self.where]
            wrong = [k for k, fn in wm.items() if k in self.where and self.where[k] != fn]
            unlisted = [k for k in self.where if k not in wm]
            if missing or wrong or unlisted:
                raise ValueError(f"index.json disagrees with shards: missing={missing[:3]} "
                                 f"wrong_file={wrong[:3]} unlisted={unlisted[:3]}")

    def keys(self):
        return self.where.keys()

    def get(self, k):
        return self.handles[self.where[k]].get_tensor(k)


def tbytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.reshape(-1).view(torch.uint8).numpy() if t.dtype != torch.uint8 else t.reshape(-1).numpy()


def nmismatch(a, b):
    """Element mismatches between two tensors compared bitwise (dtype+shape must agree)."""
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return None
    if a.dtype == torch.bfloat16:
        a, b = a.view(torch.int16), b.view(torch.int16)
    elif a.dtype == torch.float16:
        a, b = a.view(torch.int16), b.view(torch.int16)
    elif a.dtype == torch.float32:
        a, b = a.view(torch.int32), b.view(torch.int32)
    return int((a != b).sum().item())


DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.uint8: "U8"}
NAME2DT = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def desc(t):
    return f"{DT.get(t.dtype, str(t.dtype))}{list(t.shape)}"


# ---------------------------------------------------------------- reference writer
def write_reference(out):
    """transformers + bitsandbytes' own 4-bit checkpoint of the source (see --write-reference)."""
    import tempfile
    from transformers import BitsAndBytesConfig
    bcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.float32)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="check_quantized_ref_") as tmp:
        if args.gguf:
            # transformers refuses quantization_config together with gguf_file: go through an HF dir
            dt = NAME2DT[args.dtype or "float16"]
            gdir, gname = os.path.split(os.path.abspath(args.gguf))
            m = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
            tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
            cfg = m.config
            del cfg.quantization_config  # the GgufConfig marker
            cfg.dtype = dt
            sd = {k: v.to(dt) for k, v in m.state_dict().items()}
            del m
            with torch.device("meta"):
                hf = AutoModelForCausalLM.from_config(cfg, dtype=dt)
            hf.load_state_dict(sd, assign=True)
            hf.tie_weights()
            hf.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            del hf, sd
            src_dir, load_dt = tmp, dt
        else:
            src_dir = args.source
            load_dt = NAME2DT[args.dtype] if args.dtype else "auto"
            tok = AutoTokenizer.from_pretrained(src_dir)
        qm = AutoModelForCausalLM.from_pretrained(src_dir, quantization_config=bcfg, dtype=load_dt)
        # save before any forward (eval-mode Linear4bit would repack the weights on this CPU)
        qm.save_pretrained(out)
        tok.save_pretrained(out)
        del qm
    print(f"wrote the transformers/bitsandbytes reference to {out} in {time.time() - t0:.1f}s")


if args.write_reference:
    section("write the transformers/bitsandbytes reference checkpoint")
    write_reference(args.write_reference)
    if not args.quantized:
        args.quantized = args.write_reference
    report["reference_written"] = args.write_reference

# ---------------------------------------------------------------- (a) load DIR
section("a. load the 4-bit checkpoint with transformers")
qdir = args.quantized
try:
    with open(os.path.join(qdir, "config.json")) as f:
        qcfg_json = json.load(f)
except Exception as e:
    record("a.config", False, f"cannot read config.json: {e}")
    finish()
qc = qcfg_json.get("quantization_config")
want_qc = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
           "bnb_4bit_use_double_quant": True, "bnb_4bit_quant_storage": "uint8"}
if not isinstance(qc, dict):
    record("a.quantization_config", False, "config.json has no quantization_config")
else:
    bad = {k: qc.get(k, "<missing>") for k, v in want_qc.items() if qc.get(k, "<missing>") != v}
    record("a.quantization_config", not bad,
           f"bad fields {bad}" if bad else
           f"nf4, double quant, uint8 storage, compute dtype {qc.get('bnb_4bit_compute_dtype')}")
    report["quantization_config"] = qc
try:
    raw = Tensors(qdir)
except Exception as e:
    record("a.safetensors", False, str(e))
    finish()

t0 = time.time()
try:
    qmodel = AutoModelForCausalLM.from_pretrained(qdir)
except Exception as e:
    import traceback
    traceback.print_exc()
    record("a.from_pretrained", False, f"{type(e).__name__}: {e}")
    print("(continuing with the byte comparison for diagnosis; logits and generation are skipped)")
    qmodel = None
if qmodel is not None:
    # Never run eval-mode Linear4bit on this CPU (see module docstring).
    qmodel.train()
    n4 = sum(1 for m in qmodel.modules() if isinstance(m, bnb.nn.Linear4bit))
    cdt = sorted({str(m.compute_dtype) for m in qmodel.modules() if isinstance(m, bnb.nn.Linear4bit)})
    nonq_dtypes = sorted({str(p.dtype) for p in qmodel.parameters() if not isinstance(p, bnb.nn.Params4bit)})
    record("a.from_pretrained", n4 > 0,
           f"loaded in {time.time() - t0:.1f}s: {type(qmodel).__name__}, {n4} Linear4bit "
           f"(compute dtype {cdt}), other params {nonq_dtypes}")
# Upcast non-quantized floating params/buffers to float32 so that everything computes in fp32
# (from_pretrained(DIR, dtype=torch.float32) does not do it for a pre-quantized checkpoint).
if qmodel is not None:
    with torch.no_grad():
        for mod in qmodel.modules():
            for pn, p in list(mod.named_parameters(recurse=False)):
                if not isinstance(p, bnb.nn.Params4bit) and p.is_floating_point() and p.dtype != torch.float32:
                    p.data = p.data.float()
            for bn, b in list(mod.named_buffers(recurse=False)):
                if b is not None and b.is_floating_point() and b.dtype != torch.float32:
                    setattr(mod, bn, b.float())
            if isinstance(mod, bnb.nn.Linear4bit):
                mod.compute_dtype = torch.float32
                mod.compute_type_is_set = True

# quant_state dtype recorded in DIR (the dtype weights were rounded to before NF4)
qdtypes = set()
for k in raw.keys():
    if k.endswith(".weight.quant_state.bitsandbytes__nf4"):
        try:
            qdtypes.add(json.loads(bytes(raw.get(k).numpy()).decode("utf-8"))["dtype"])
        except Exception as e:
            qdtypes.add(f"<unreadable JSON in {k}: {e}>")
if len(qdtypes) != 1 or next(iter(qdtypes)) not in NAME2DT:
    record("a.quant_state_dtype", False, f"quant_state dtypes {sorted(qdtypes)} (want one of {list(NAME2DT)})")
    finish()
round_dtype_name = next(iter(qdtypes))
round_dtype = NAME2DT[round_dtype_name]
print(f"quant_state dtype: {round_dtype_name} (source weights are rounded to it before NF4)")
report["round_dtype"] = round_dtype_name

# ---------------------------------------------------------------- source model
section("load the source in float32")
t0 = time.time()
if args.gguf:
    gdir, gname = os.path.split(os.path.abspath(args.gguf))
    smodel = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
    stok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
else:
    smodel = AutoModelForCausalLM.from_pretrained(args.source, dtype=torch.float32)
    try:
        stok = AutoTokenizer.from_pretrained(args.source)
    except Exception as e:
        print(f"source has no usable tokenizer ({type(e).__name__}: {e})")
        stok = None
smodel.train()  # plain nn.Linear model; train() only for symmetry (no dropout in Llama at p=0)
print(f"source loaded in {time.time() - t0:.1f}s: {type(smodel).__name__}, "
      f"{sum(p.numel() for p in smodel.parameters()) / 1e6:.1f} M params")

# config fields that must agree
cfg_bad = []
cfg_keys = ["model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "vocab_size", "tie_word_embeddings", "rms_norm_eps",
            "max_position_embeddings", "bos_token_id", "eos_token_id"]
for key in cfg_keys:
    a, b = getattr(smodel.config, key, None), qcfg_json.get(key)
    if a != b and not (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-6)):
        cfg_bad.append(f"{key}: source {a!r} vs quantized {b!r}")
sr = getattr(smodel.config, "rope_parameters", None) or {}
qr = qcfg_json.get("rope_parameters") or {}
q_theta = qr.get("rope_theta", qcfg_json.get("rope_theta"))
if sr.get("rope_theta") != q_theta:
    cfg_bad.append(f"rope_theta: source {sr.get('rope_theta')} vs quantized {q_theta}")
record("a.config_vs_source", not cfg_bad,
       "; ".join(cfg_bad) if cfg_bad else f"{len(cfg_keys) + 1} architecture fields agree")

# which linears transformers would quantize: every nn.Linear except the output embedding
out_emb = smodel.get_output_embeddings()
tied = bool(getattr(smodel.config, "tie_word_embeddings", False))
linears = [(n, m) for n, m in smodel.named_modules()
           if isinstance(m, torch.nn.Linear) and m is not out_emb]
skip = set((qc or {}).get("llm_int8_skip_modules") or [])
linears = [(n, m) for n, m in linears if not any(n == s or n.endswith("." + s) for s in skip)]
if qmodel is not None:
    qmods = {n for n, m in qmodel.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    missing4 = sorted({n for n, _ in linears} - qmods)
    extra4 = sorted(qmods - {n for n, _ in linears})
    record("a.linear4bit_set", not missing4 and not extra4,
           f"{len(qmods)} Linear4bit; not 4-bit but should be: {missing4[:5]}; unexpected: {extra4[:5]}")

# tokenizer of DIR (checked below); prompts for (c)
try:
    qtok, qtok_err = AutoTokenizer.from_pretrained(qdir), None
except Exception as e:
    qtok, qtok_err = None, e
tok_for_prompts = qtok if qtok is not None else stok
prompts = args.prompt or DEFAULT_PROMPTS
if tok_for_prompts is not None:
    enc = [tok_for_prompts(p, return_tensors="pt")["input_ids"] for p in prompts]
else:  # no tokenizer anywhere: fixed token ids
    g = torch.Generator().manual_seed(0)
    enc = [torch.randint(0, smodel.config.vocab_size, (1, 8 + 4 * i), generator=g) for i in range(3)]
    prompts = [f"<random ids {i}>" for i in range(3)]

# Round the source to the storage dtype in place (exact in float32). For information in (c),
# keep the logits of this unquantized model; its linears are then replaced one by one by
# bnb's dequantized NF4 weights during (b), so only one float32 copy of the model is held.
with torch.no_grad():
    for p in smodel.parameters():
        p.data = p.data.to(round_dtype).float()
    full_logits = [smodel(input_ids=ids).logits.float() for ids in enc] if qmodel is not None else None

# ---------------------------------------------------------------- (b) bytes
section(f"b. byte comparison with bnb quantize_4bit(nf4, blocksize 64, double quant) of {round_dtype_name} weights")
sd = smodel.state_dict()
lin_names = {n for n, _ in linears}
expected = {}
for k in sd:
    mod = k.rsplit(".", 1)[0]
    if k.endswith(".weight") and mod in lin_names:
        for s in QUANT_SUFFIXES:
            expected[f"{mod}.{s}"] = "q"
    elif tied and out_emb is not None and sd[k] is getattr(out_emb, "weight", None) and k.startswith("lm_head"):
        continue  # tied lm_head is not written
    else:
        expected[k] = "plain"
if tied:
    expected.pop("lm_head.weight", None)
plain_src = {k: sd[k] for k, kind in expected.items() if kind == "plain"}
del sd
have = set(raw.keys())
miss = sorted(set(expected) - have)
extra = sorted(have - set(expected))
record("b.tensor_names", not miss and not extra,
       f"{len(have)} tensors in checkpoint, {len(expected)} expected; missing {len(miss)} {miss[:4]}; "
       f"unexpected {len(extra)} {extra[:4]}")

totals = {s: [0, 0, 0] for s in QUANT_SUFFIXES + ["nested_offset"]}  # tensors, bad tensors, bad elems
per_tensor = []
t0 = time.time()
with torch.no_grad():
    for name, mod in linears:
        w = mod.weight.detach().to(round_dtype).contiguous()
        packed, qs = bnbF.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
        ref = {"weight": packed}
        for k, v in qs.as_dict(packed=True).items():
            ref["weight." + k] = v
        row = {"name": name, "shape": list(w.shape)}
        for s in QUANT_SUFFIXES:
            key = f"{name}.{s}"
            totals[s][0] += 1
            if key not in have:
                row[s] = "missing"
                totals[s][1] += 1
                continue
            got = raw.get(key)
            r = ref[s]
            if s.endswith("bitsandbytes__nf4"):
                gb, rb = bytes(got.numpy()), bytes(r.numpy())
                ok = gb == rb
                row[s] = "ok" if ok else f"json differs: got {gb.decode(errors='replace')} want {rb.decode()}"
                if not ok:
                    totals[s][1] += 1
                    totals[s][2] += 1
                try:
                    off = json.loads(gb.decode("utf-8")).get("nested_offset")
                    okoff = off is not None and np.float32(off).view(np.uint32) == \
                        np.float32(qs.offset.item()).view(np.uint32)
                except Exception:
                    okoff = False
                totals["nested_offset"][0] += 1
                if not okoff:
                    totals["nested_offset"][1] += 1
                    totals["nested_offset"][2] += 1
                row["nested_offset"] = "ok" if okoff else f"got {off!r} want {qs.offset.item()!r}"
                continue
            nm = nmismatch(got, r)
            if nm is None:
                row[s] = f"dtype/shape {desc(got)} want {desc(r)}"
                totals[s][1] += 1
                totals[s][2] += r.numel()
                continue
            if nm:
                totals[s][1] += 1
                totals[s][2] += nm
                extra_info = ""
                if s == "weight":
                    g8, r8 = got.reshape(-1).to(torch.int16), r.reshape(-1).to(torch.int16)
                    dh = ((g8 >> 4) - (r8 >> 4)).abs()
                    dl = ((g8 & 15) - (r8 & 15)).abs()
                    nn_ = int((dh != 0).sum() + (dl != 0).sum())
                    extra_info = f" ({nn_} nibbles differ, max code distance {int(max(dh.max(), dl.max()))})"
                elif s == "weight.absmax":
                    d = (got.to(torch.int16) - r.to(torch.int16)).abs()
                    extra_info = f" (max code distance {int(d.max())})"
                elif got.dtype == torch.float32:
                    extra_info = f" (max abs diff {float((got - r).abs().max()):.3g})"
                row[s] = f"{nm}/{r.numel()} differ{extra_info}"
            else:
                row[s] = f"0/{r.numel()}"
        per_tensor.append(row)
        bad = [s for s in QUANT_SUFFIXES + ["nested_offset"]
               if not (row.get(s) == "ok" or str(row.get(s, "")).startswith("0/"))]
        if bad or args.verbose:
            print(f"  {'MISMATCH' if bad else 'ok      '} {name} {row['shape']}: " +
                  ", ".join(f"{s.replace('weight.', '').replace('quant_state.bitsandbytes__nf4', 'json')}={row[s]}"
                            for s in ["weight", "weight.absmax", "weight.nested_absmax", "nested_offset",
                                      "weight.quant_map", "weight.nested_quant_map",
                                      "weight.quant_state.bitsandbytes__nf4"] if s in row), flush=True)
        # the reference dequantized weight, as Linear4bit computes it in train mode (float32)
        qs.dtype = torch.float32
        mod.weight.data = bnbF.dequantize_4bit(packed, quant_state=qs).reshape(w.shape)
print(f"quantized {len(linears)} linears with bnb in {time.time() - t0:.1f}s")
for s, (nt, nb, ne) in totals.items():
    label = s if s != "weight.quant_state.bitsandbytes__nf4" else "quant_state JSON"
    record(f"b.{label}", nb == 0, f"{nt - nb}/{nt} tensors identical" + (f", {ne} elements differ" if nb else ""))

# unquantized tensors: compare with the rounded source
plain_bad = []
nplain = 0
for k, kind in expected.items():
    if kind != "plain" or k not in have:
        continue
    nplain += 1
    r = plain_src[k].detach().to(round_dtype).contiguous()
    got = raw.get(k)
    nm = nmismatch(got, r)
    if nm is None:
        plain_bad.append(f"{k}: {desc(got)} want {desc(r)}")
    elif nm:
        plain_bad.append(f"{k}: {nm}/{r.numel()} differ (max abs diff "
                         f"{float((got.float() - r.float()).abs().max()):.3g})")
for line in plain_bad:
    print("  MISMATCH " + line)
record("b.unquantized_tensors", not plain_bad and nplain > 0,
       f"{nplain - len(plain_bad)}/{nplain} identical to the source rounded to {round_dtype_name}")
report["per_linear"] = per_tensor

# ---------------------------------------------------------------- tokenizer
section("tokenizer")
try:
    if stok is None:
        raise LookupError("skip")
    if qtok is None:
        raise qtok_err
    tok_bad = []
    for s in TOKENIZER_SAMPLES:
        a, b = stok(s)["input_ids"], qtok(s)["input_ids"]
        if a != b:
            tok_bad.append(f"{s[:30]!r}: source {a[:12]}... quantized {b[:12]}...")
    for attr in ["bos_token_id", "eos_token_id"]:
        if getattr(stok, attr) != getattr(qtok, attr):
            tok_bad.append(f"{attr}: source {getattr(stok, attr)} vs quantized {getattr(qtok, attr)}")
    if len(stok) != len(qtok):
        tok_bad.append(f"vocab size source {len(stok)} vs quantized {len(qtok)}")
    msgs = [{"role": "user", "content": args.question}]
    if stok.chat_template and qtok.chat_template:
        rs = stok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        rq = qtok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        if rs != rq:
            tok_bad.append(f"chat template renders differently: {rs!r} vs {rq!r}")
    elif stok.chat_template and not qtok.chat_template:
        tok_bad.append("source has a chat template, quantized dir has none")
    for line in tok_bad:
        print("  MISMATCH " + line)
    record("tokenizer", not tok_bad, f"{len(TOKENIZER_SAMPLES)} samples, vocab {len(qtok)}, "
           f"bos {qtok.bos_token!r} eos {qtok.eos_token!r}" + (f"; {len(tok_bad)} problems" if tok_bad else ""))
except LookupError:
    record("tokenizer", True, "skipped: the source has no tokenizer" +
           ("" if qtok is None else " (the quantized dir has one)"))
except Exception as e:
    record("tokenizer", False, f"{type(e).__name__}: {e}")

if qmodel is None:
    finish()

# ---------------------------------------------------------------- (c) logits
section("c. logits: 4-bit model vs float32 model with bnb-dequantized linears")
with torch.no_grad():
    # the reference model: source rounded to the storage dtype, linears = bnb-dequantized NF4 (set in b)
    ref_logits = [smodel(input_ids=ids).logits.float() for ids in enc]
    q_logits = [qmodel(input_ids=ids).logits.float() for ids in enc]
maxdiff, maxfull, top1 = 0.0, 0.0, 0
for i, p in enumerate(prompts):
    d = float((q_logits[i] - ref_logits[i]).abs().max())
    df = float((q_logits[i] - full_logits[i]).abs().max())
    agree = float((q_logits[i].argmax(-1) == ref_logits[i].argmax(-1)).float().mean())
    maxdiff, maxfull = max(maxdiff, d), max(maxfull, df)
    print(f"  prompt {i} ({enc[i].shape[1]} tokens) {p[:40]!r}: max|4bit - ref| = {d:.3g}, "
          f"top-1 agreement {agree:.3f}; max|4bit - unquantized {round_dtype_name}| = {df:.3g} (info), "
          f"max|logit| {float(ref_logits[i].abs().max()):.3g}")
record("c.logits", maxdiff <= args.logits_tol,
       f"max abs diff {maxdiff:.3g} (tol {args.logits_tol:g}); vs unquantized source {maxfull:.3g} (info)")
report["logits_max_abs_diff"] = maxdiff
report["logits_max_abs_diff_vs_unquantized"] = maxfull

# ---------------------------------------------------------------- (d) generation
if not args.no_generate and tok_for_prompts is None:
    print("\n(d) skipped: no tokenizer")
elif not args.no_generate:
    section("d. greedy generation")
    tk = tok_for_prompts
    msgs = [{"role": "user", "content": args.question}]
    if tk.chat_template:
        text = tk.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    else:
        print("  (no chat template in the quantized dir: using a bare ChatML prompt)")
        text = f"<|im_start|>user\n{args.question}<|im_end|>\n<|im_start|>assistant\n"
    ids = tk(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    print(f"  prompt ({ids.shape[1]} tokens): {text!r}")
    eos = qmodel.generation_config.eos_token_id
    if eos is None:
        eos = tk.eos_token_id
    pad = tk.pad_token_id if tk.pad_token_id is not None else (eos if isinstance(eos, int) else eos[0])
    gen_kw = dict(max_new_tokens=args.max_new_tokens, do_sample=False, num_beams=1,
                  eos_token_id=eos, pad_token_id=pad, attention_mask=torch.ones_like(ids))
    with torch.no_grad():
        t0 = time.time()
        out_q = qmodel.generate(ids, **gen_kw)[0, ids.shape[1]:]
        tq = time.time() - t0
        out_r = smodel.generate(ids, **gen_kw)[0, ids.shape[1]:]
    ans = tk.decode(out_q, skip_special_tokens=True)
    ans_r = tk.decode(out_r, skip_special_tokens=True)
    print(f"  4-bit model answer ({len(out_q)} tokens, {tq:.1f}s): {ans!r}")
    if out_q.tolist() != out_r.tolist():
        print(f"  reference answer: {ans_r!r}")
    report["answer"] = ans
    record("d.generate_matches_reference", out_q.tolist() == out_r.tolist() and len(out_q) > 0,
           f"{len(out_q)} tokens, same as the dequantized reference model: {out_q.tolist() == out_r.tolist()}")
    if args.expect is not None:
        record("d.expect", args.expect in ans, f"answer contains {args.expect!r}: {args.expect in ans}")

finish()
