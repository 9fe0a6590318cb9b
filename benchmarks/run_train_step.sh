#!/usr/bin/env bash
# One QLoRA training step (LoRA r=16, alpha 32, all seven projections, seq 256 x batch 4, AdamW) of
# swift-qlora on an NF4 base against PyTorch + PEFT on the same model shape, in one session, with
# and without gradient checkpointing. Needs the reference Python stack (tools/reference/README.md):
# REF_PYTHON=/path/to/venv/bin/python (default: python3).
# Usage: benchmarks/run_train_step.sh [small|tinyllama ...]   (default: small tinyllama)
# Output: benchmarks/results/train-step-<shape>-<date>.json and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
REF_PYTHON="${REF_PYTHON:-python3}"
shapes=("$@")
[ $# -eq 0 ] && shapes=(small tinyllama)
mkdir -p benchmarks/results
swift build -c release --product train-step-bench >&2
for shape in "${shapes[@]}"; do
    case "$shape" in
        small) synthetic=llama-small; steps=6 ;;
        tinyllama) synthetic=tinyllama-1.1b; steps=3 ;;
        *) echo "unknown shape $shape (small, tinyllama)" >&2; exit 2 ;;
    esac
    stamp="$(date -u +%Y%m%dT%H%M%SZ)"
    .build/release/train-step-bench --shape "$synthetic" --steps "$steps" --warmup 1 > "/tmp/qlora-step-$stamp.json"
    .build/release/train-step-bench --shape "$synthetic" --steps "$steps" --warmup 1 --checkpointing > "/tmp/qlora-step-ckpt-$stamp.json"
    "$REF_PYTHON" tools/bench_peft_step.py --shape "$shape" --setting all --steps "$steps" --warmup 1 \
        --json "/tmp/qlora-peft-$stamp.json" >&2
    python3 - "/tmp/qlora-step-$stamp.json" "/tmp/qlora-step-ckpt-$stamp.json" "/tmp/qlora-peft-$stamp.json" \
        "benchmarks/results/train-step-$shape-$stamp.json" <<'PY'
import json, sys
ours, ours_ckpt, peft = (json.load(open(p)) for p in sys.argv[1:4])
records = {r["setting"]: r for r in peft["records"]}
print(f"{'setting':<28} {'tokens/s':>9} {'peak RSS GiB':>13}")
for name, r in (("swift-qlora nf4", ours), ("swift-qlora nf4 + ckpt", ours_ckpt)):
    print(f"{name:<28} {r['tokens_per_s']:>9.1f} {r['peak_rss_bytes'] / 2**30:>13.2f}")
for name, r in records.items():
    print(f"{'PyTorch+PEFT ' + name:<28} {r['tokens_per_s']:>9.1f} {r['process_peak_rss_bytes'] / 2**30:>13.2f}")
for mine, theirs in ((ours, "fp32"), (ours, "nf4"), (ours_ckpt, "fp32-ckpt"), (ours_ckpt, "nf4-ckpt")):
    if theirs in records:
        print(f"ratio vs PEFT {theirs:<10} {mine['tokens_per_s'] / records[theirs]['tokens_per_s']:.2f}x")
json.dump({"swift_qlora": ours, "swift_qlora_checkpointing": ours_ckpt, "peft": peft}, open(sys.argv[4], "w"), indent=1)
print("wrote", sys.argv[4])
PY
done
