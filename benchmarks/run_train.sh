#!/usr/bin/env bash
# qlora-train end to end on a synthetic model (quantize --synthetic, seeded random weights) at several
# --mem-budget values: the plan the planner chose, the measured peak RSS (VmHWM) against the budget,
# and the median tokens/s (rows x seq-len per second, optimizer step included). The data is seeded
# random token ids, so the loss says nothing; the figures are memory and speed.
# Usage: benchmarks/run_train.sh [tinyllama|llama-7b|small] [budget ...]
#   default: tinyllama 8GiB 2GiB 1GiB (seq 256 x batch 4, 4 steps); llama-7b uses seq 128 x batch 1, 2 steps.
# BUILD_DIR (default .build); models are cached in $QLORA_BENCH_CACHE (default /tmp/qlora-bench).
# Output: benchmarks/results/train-<shape>-<date>.json and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
shape="${1:-tinyllama}"
shift || true
budgets=("$@")
case "$shape" in
    small) synthetic=llama-small seq=256 batch=4 steps=4 vocab=32000; [ ${#budgets[@]} -eq 0 ] && budgets=(4GiB 1GiB) ;;
    tinyllama) synthetic=tinyllama-1.1b seq=256 batch=4 steps=4 vocab=32000; [ ${#budgets[@]} -eq 0 ] && budgets=(8GiB 2GiB 1GiB) ;;
    llama-7b) synthetic=llama-7b seq=128 batch=1 steps=2 vocab=32000; [ ${#budgets[@]} -eq 0 ] && budgets=(2GiB) ;;
    *) echo "unknown shape $shape (small, tinyllama, llama-7b)" >&2; exit 2 ;;
esac
build="${BUILD_DIR:-.build}"
cache="${QLORA_BENCH_CACHE:-/tmp/qlora-bench}"
swift build -c release --scratch-path "$build" --product quantize >&2
swift build -c release --scratch-path "$build" --product qlora-train >&2
model="$cache/$synthetic-nf4"
[ -f "$model/config.json" ] || "$build/release/quantize" --synthetic "$synthetic" --output "$model" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -c "
import json, random
r = random.Random(0)
with open('$work/train.jsonl', 'w') as f:
    for _ in range(64):
        f.write(json.dumps({'input_ids': [r.randrange(3, $vocab) for _ in range($seq)]}) + '\n')
"
mkdir -p benchmarks/results
out="benchmarks/results/train-$shape-$(date -u +%Y%m%dT%H%M%SZ).json"
runs=()
for budget in "${budgets[@]}"; do
    echo "== $shape, --mem-budget $budget" >&2
    "$build/release/qlora-train" --model "$model" --data "$work/train.jsonl" --valid-fraction 0 --output "$work/out-$budget" \
        --metrics "$work/metrics-$budget.jsonl" --mem-budget "$budget" --seq-len "$seq" --batch-size "$batch" \
        --max-steps "$steps" --lr 1e-4 > "$work/log-$budget.txt" 2>&1 || { cat "$work/log-$budget.txt" >&2; exit 1; }
    runs+=("$budget")
done
python3 - "$out" "$work" "$shape" "$seq" "$batch" "$(git rev-parse --short HEAD)" "${runs[@]}" <<'PY'
import json, statistics, sys, platform
out, work, shape, seq, batch, commit, *budgets = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
result = {"shape": shape, "seq": int(seq), "batch": int(batch), "commit": commit, "cpu": cpu, "runs": []}
for budget in budgets:
    metrics = [json.loads(l) for l in open(f"{work}/metrics-{budget}.jsonl")]
    log = open(f"{work}/log-{budget}.txt").read()
    plan = log[log.index("Memory plan:"):log.index("choices:")]
    choices = log[log.index("choices:"):].splitlines()[0]
    peak = max(m["peak_rss_bytes"] for m in metrics)
    result["runs"].append({"budget": budget, "choices": choices, "plan": plan.splitlines()[1:],
                           "planned_total": plan.splitlines()[-1], "peak_rss_bytes": peak,
                           "tokens_per_s_median": statistics.median(m["tokens_per_s"] for m in metrics),
                           "step_seconds": [m["seconds"] for m in metrics]})
json.dump(result, open(out, "w"), indent=1)
print(f"{shape}, seq {seq} x batch {batch} ({cpu}); {out}")
print(f"{'budget':>8} {'peak RSS':>10} {'tok/s':>7}  choices")
for r in result["runs"]:
    print(f"{r['budget']:>8} {r['peak_rss_bytes'] / 2**30:8.2f} GiB {r['tokens_per_s_median']:7.1f}  {r['choices'][9:]}")
PY
