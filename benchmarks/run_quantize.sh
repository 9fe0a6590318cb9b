#!/usr/bin/env bash
# NF4 quantize / dequantize throughput of swift-qlora against bitsandbytes' CPU functions on the
# same shapes, in one session, and the ratio. Needs the reference Python stack (tools/reference/
# README.md): REF_PYTHON=/path/to/venv/bin/python (default: python3).
# Output: benchmarks/results/quantize-<date>.json and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
REF_PYTHON="${REF_PYTHON:-python3}"
mkdir -p benchmarks/results
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
swift build -c release --product quantize-bench >&2
.build/release/quantize-bench > "/tmp/qlora-swift-$stamp.json"
"$REF_PYTHON" tools/bench_bnb.py --no-nodq --json "/tmp/qlora-bnb-$stamp.json" >&2
python3 - "/tmp/qlora-swift-$stamp.json" "/tmp/qlora-bnb-$stamp.json" "benchmarks/results/quantize-$stamp.json" <<'PY'
import json, sys
ours, theirs = (json.load(open(p)) for p in sys.argv[1:3])
bnb_records = theirs
def key(r): return tuple(r["shape"])
bnb = {}
for r in bnb_records:
    bnb.setdefault(key(r), {}).update(r)
rows = []
print(f"{'shape':>12} | {'quantize GB/s':>14} {'bnb':>7} {'ratio':>6} | {'dequant Gelem/s':>15} {'bnb':>7} {'ratio':>6}")
for r in ours["records"]:
    b = bnb.get(key(r), {})
    q_bnb = b.get("quantize_gb_per_s")
    d_bnb = b.get("dequantize_gelems_per_s")
    row = {"shape": r["shape"], "quantize_GBps": r["quantize_GBps"], "bnb_quantize_GBps": q_bnb,
           "dequantize_Gelem_per_s": r["dequantize_Gelem_per_s"], "bnb_dequantize_Gelem_per_s": d_bnb}
    row["quantize_ratio"] = r["quantize_GBps"] / q_bnb if q_bnb else None
    row["dequantize_ratio"] = r["dequantize_Gelem_per_s"] / d_bnb if d_bnb else None
    rows.append(row)
    fmt = lambda v, spec: format(v, spec) if v is not None else "?"
    print(f"{'x'.join(map(str, r['shape'])):>12} | {r['quantize_GBps']:14.2f} {fmt(q_bnb, '7.3f')} {fmt(row['quantize_ratio'], '6.1f')} | "
          f"{r['dequantize_Gelem_per_s']:15.2f} {fmt(d_bnb, '7.2f')} {fmt(row['dequantize_ratio'], '6.1f')}")
for s in ours["sgemm"]:
    print(f"sgemm {'x'.join(map(str, s['shape']))}: {s['GFLOPs']:.1f} GFLOP/s ({ours['blas']})")
json.dump({"swift": ours, "bitsandbytes": theirs, "comparison": rows}, open(sys.argv[3], "w"), indent=1)
print(f"written {sys.argv[3]}")
PY
