#!/usr/bin/env bash
# Checks qlora-train against PEFT + bitsandbytes on SmolLM2-135M-Instruct: the same NF4 checkpoint,
# PEFT's initial adapter (lora_B randomized so step 1 exercises the adapters), the same pre-tokenized
# rows from Hamlet, no packing, no shuffle, constant lr. Compares the per-step losses (must agree
# within 1e-3 relative) and the eval loss of our final adapter as PEFT computes it.
# Needs the reference venv (default /work/refvenv; REFVENV=...) and out/smollm2-135m-nf4 (tools/demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${REFVENV:-/work/refvenv}/bin/python"
REF=tools/reference/peft_train_reference.py
MODEL=out/smollm2-135m-nf4
OUT="${1:-out/peft-check}"
STEPS="${STEPS:-10}"
COMMON=(--batch-size 4 --seq-len 128)
[ -x "$PY" ] || { echo "check_peft_training: no python at $PY; set REFVENV to a venv with torch, transformers, peft, bitsandbytes" >&2; exit 1; }
[ -f "$MODEL/model.safetensors" ] || { echo "check_peft_training: $MODEL is missing; run tools/demo.sh first" >&2; exit 1; }
swift build -c release --product qlora-train >&2
rm -rf "$OUT" && mkdir -p "$OUT"
"$PY" "$REF" make-data --model "$MODEL" --output "$OUT/train.jsonl" --rows 64 --seed 0 --min-len 16 --max-len 128
"$PY" "$REF" make-data --model "$MODEL" --output "$OUT/valid.jsonl" --rows 32 --seed 1 --min-len 16 --max-len 128
"$PY" "$REF" init-adapter --model "$MODEL" --output "$OUT/init" --r 16 --alpha 32 --target-modules all-linear --seed 0 --random-b 0.01
"$PY" "$REF" train --model "$MODEL" --adapter "$OUT/init" --data "$OUT/train.jsonl" --steps "$STEPS" "${COMMON[@]}" \
    --lr 1e-3 --weight-decay 0.0 --max-grad-norm 1.0 --output "$OUT/peft" --eval-data "$OUT/valid.jsonl"
.build/release/qlora-train --model "$MODEL" --data "$OUT/train.jsonl" --valid-data "$OUT/valid.jsonl" --init-adapter "$OUT/init" \
    --no-packing --no-shuffle --lr-schedule constant --lr 1e-3 --weight-decay 0 --max-grad-norm 1.0 --lora-dropout 0 \
    --max-steps "$STEPS" "${COMMON[@]}" --eval-every "$STEPS" --mem-budget 2GiB --output "$OUT/ours" --metrics "$OUT/ours/metrics.jsonl"
"$PY" "$REF" eval --model "$MODEL" --adapter "$OUT/ours" --data "$OUT/valid.jsonl" "${COMMON[@]}" | tail -1 > "$OUT/peft-eval-of-ours.json"
"$PY" - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
ref = json.load(open(f"{out}/peft/losses.json"))
ours = [json.loads(line) for line in open(f"{out}/ours/metrics.jsonl")]
worst = 0.0
print("step  PEFT loss   ours        rel diff   PEFT |g|   ours |g|")
for step, (a, m) in enumerate(zip(ref["losses"], ours), 1):
    rel = abs(m["loss"] - a) / abs(a)
    worst = max(worst, rel)
    print(f"{step:4d}  {a:.6f}  {m['loss']:.6f}  {rel:.2e}  {ref['grad_norms'][step - 1]:.5f}  {m['grad_norm']:.5f}")
ours_eval = [m["eval_loss"] for m in ours if "eval_loss" in m][-1]
peft_of_ours = json.load(open(f"{out}/peft-eval-of-ours.json"))["eval_loss"]
print(f"worst per-step loss difference {worst:.2e} (tolerance 1e-3)")
print(f"eval loss: PEFT's adapter in PEFT {ref['eval_loss']:.6f}; ours in qlora-train {ours_eval:.6f}; ours in PEFT {peft_of_ours:.6f}")
if len(ours) != len(ref["losses"]) or worst > 1e-3 or abs(peft_of_ours - ref["eval_loss"]) / ref["eval_loss"] > 1e-3:
    sys.exit("check_peft_training: FAILED")
print("check_peft_training: ok")
PYEOF
