#!/usr/bin/env bash
# The paged AdamW optimizer (optim-bench) on the state of LoRA r=16, alpha 32, all seven projections:
# 100 real training steps (seq 64 x batch 1), then for page sizes 64 KiB - 4 MiB the compression of
# the state, spill and restore throughput, and the optimizer step with 0%, 50% and 100% spilled.
# Usage: benchmarks/run_optim.sh [small|tinyllama|llama-7b ...]   (default: tinyllama llama-7b)
# Extra optim-bench options go in OPTIM_ARGS (e.g. OPTIM_ARGS="--spill-dir /data --checkpointing");
# BUILD_DIR (default .build) is the build's scratch path.
# Output: benchmarks/results/optim-<shape>-<date>.json and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
shapes=("$@")
[ $# -eq 0 ] && shapes=(tinyllama llama-7b)
mkdir -p benchmarks/results
build="${BUILD_DIR:-.build}"
swift build -c release --scratch-path "$build" --product optim-bench >&2
for shape in "${shapes[@]}"; do
    case "$shape" in
        small) synthetic=llama-small ;;
        tinyllama) synthetic=tinyllama-1.1b ;;
        llama-7b) synthetic=llama-7b ;;
        *) echo "unknown shape $shape (small, tinyllama, llama-7b)" >&2; exit 2 ;;
    esac
    stamp="$(date -u +%Y%m%dT%H%M%SZ)"
    out="benchmarks/results/optim-$shape-$stamp.json"
    # shellcheck disable=SC2086
    "$build/release/optim-bench" --shape "$synthetic" ${OPTIM_ARGS:-} > "$out.tmp"
    mv "$out.tmp" "$out"
    python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["training"]
print(f"{r['shape']}: {r['lora_parameters'] / 1e6:.1f} M LoRA parameters, AdamW state {r['state_bytes'] / 2**20:.0f} MiB; "
      f"{r['steps']} steps of {r['batch']}x{r['seq']}: loss {t['loss_first']:.3f} -> {t['loss_last']:.3f}, "
      f"forward+backward {t['forward_backward_seconds_median']:.3f} s, optimizer {t['optimizer_step_seconds_median'] * 1e3:.1f} ms (1 MiB pages, resident)")
print("compression of the state (1 MiB pages): " + ", ".join(
    f"step {s['step']} {s['ratio']:.3f}x ({s['zero_pages']} zero/{s['raw_pages']} raw/{s['compressed_pages']} lz4)" for s in t["surveys"]))
print(f"{'page':>6} {'pages':>6} {'ratio':>6} {'spill GB/s':>10} {'restore GB/s':>12} {'RSS drop MiB':>12} "
      f"{'t0 ms':>7} {'t50 ms':>7} {'t100 ms':>8} {'opt +50%':>9} {'opt +100%':>9} {'step +50%':>9} {'step +100%':>10}")
for p in r["page_sizes"]:
    s, o, w = p["step"], p["overhead_optimizer_step"], p["overhead_training_step"]
    drop = (p["spill"]["vm_rss_before_bytes"] - p["spill"]["vm_rss_after_bytes"]) / 2**20
    print(f"{p['page_bytes'] >> 10:>4}K {p['pages']:>6} {p['survey']['ratio']:>6.3f} {p['spill']['GBps_worker']:>10.2f} "
          f"{p['restore']['GBps_worker']:>12.2f} {drop:>12.0f} {s['0']['step_seconds_median'] * 1e3:>7.1f} "
          f"{s['50']['step_seconds_median'] * 1e3:>7.1f} {s['100']['step_seconds_median'] * 1e3:>8.1f} {o['50']:>9.0%} {o['100']:>9.0%} "
          f"{w['50']:>9.1%} {w['100']:>10.1%}")
print("wrote", sys.argv[1])
PY
done
