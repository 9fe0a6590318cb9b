#!/usr/bin/env python3
"""Compare quantized tensors of a converted checkpoint with bitsandbytes' own quantization of the
same source tensors, one tensor at a time (so 7B+ checkpoints fit in memory).

Usage: /work/refvenv/bin/python tools/reference/compare_tensors.py --source HF_DIR --quantized OUT_DIR
           [--names REGEX] [--limit N] [--threads N]
For each quantized linear whose name matches: load the source tensor (safetensors, its dtype), run
bnb.functional.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True) with
torch using --threads threads, and compare packed codes, absmax codes, nested absmax, the maps and
the quant_state JSON byte for byte. Exit 1 on any difference.
"""
import argparse
import json
import os
import re
import sys

import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F
from safetensors import safe_open

assert (torch.__version__.split("+")[0], bnb.__version__) == ("2.15.0", "0.50.2"), "pinned torch 2.15.0 / bitsandbytes 0.50.2"


def shard_map(directory):
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            return {k: os.path.join(directory, v) for k, v in json.load(f)["weight_map"].items()}
    files = [os.path.join(directory, f) for f in sorted(os.listdir(directory)) if f.endswith(".safetensors")]
    mapping = {}
    for path in files:
        with safe_open(path, "pt") as f:
            mapping.update({k: path for k in f.keys()})
    return mapping


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--quantized", required=True)
    parser.add_argument("--names", default=r"\.(q|k|v|o|gate|up|down)_proj\.weight$")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source, quantized = shard_map(args.source), shard_map(args.quantized)
    names = [n for n in quantized if re.search(args.names, n) and n + ".absmax" in quantized]
    names = names[: args.limit] if args.limit else names
    failures = 0
    for name in names:
        with safe_open(source[name], "pt") as f:
            weight = f.get_tensor(name)
        packed, state = F.quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=True)
        expected = {name: packed, **{f"{name}.{k}": v for k, v in state.as_dict(packed=True).items()}}
        diffs = []
        with safe_open(quantized[name], "pt") as f:
            for key, value in expected.items():
                ours = f.get_tensor(key)
                if ours.dtype != value.dtype or ours.shape != value.shape or not torch.equal(ours, value):
                    diffs.append(key.split(".")[-1])
        status = "identical" if not diffs else f"DIFFERENT: {diffs}"
        failures += bool(diffs)
        print(f"{name} {tuple(weight.shape)} {weight.dtype}, {state.absmax.numel()} absmax blocks: {status}", flush=True)
    print(f"{len(names) - failures}/{len(names)} tensors byte-identical (torch threads {args.threads})")
    sys.exit(1 if failures or not names else 0)


if __name__ == "__main__":
    main()
