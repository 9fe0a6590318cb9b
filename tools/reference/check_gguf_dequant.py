#!/usr/bin/env python3
"""Checks our dequantization of real GGUF tensors against gguf-py's gguf.quants.dequantize, bitwise.

  QLORA_SMOLLM2_GGUF=/work/models/SmolLM2-135M-Instruct.Q4_1.gguf QLORA_DEQUANT_OUT=/tmp/qlora-dq \\
    swift test --filter ggufSmolLM2RealFile
  /work/refvenv/bin/python tools/reference/check_gguf_dequant.py /work/models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/qlora-dq

Every <tensor name>.f32 in the dump folder (float32, row-major (rows, ne[0])) is compared with
gguf-py's dequantization of that tensor. Pinned: gguf 0.19.0. Exit status 1 on any difference.
"""

import os
import sys

import numpy as np
import gguf


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    import importlib.metadata as md
    if md.version("gguf") != "0.19.0":
        print(f"warning: gguf {md.version('gguf')}, checked with 0.19.0")
    reader = gguf.GGUFReader(sys.argv[1])
    tensors = {t.name: t for t in reader.tensors}
    dump = sys.argv[2]
    failed = 0
    names = sorted(f[:-4] for f in os.listdir(dump) if f.endswith(".f32"))
    if not names:
        sys.exit(f"no .f32 files in {dump}")
    for name in names:
        t = tensors[name]
        want = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        got = np.fromfile(os.path.join(dump, name + ".f32"), dtype="<f4")
        same_shape = got.shape == want.shape
        diff = int(np.count_nonzero(got.view(np.uint32) != want.view(np.uint32))) if same_shape else -1
        status = "bit-identical" if diff == 0 else f"{diff} elements differ" if same_shape else f"shape {got.shape} vs {want.shape}"
        print(f"{name:28s} {t.tensor_type.name:5s} ne={list(map(int, t.shape))} {want.size:>9d} values: {status}")
        failed += diff != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
