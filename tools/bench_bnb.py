#!/usr/bin/env python3
"""Benchmark bitsandbytes 0.50.2 NF4 quantize/dequantize on this CPU (the reference our Swift
quantizer is compared with).

Usage:
  /work/refvenv/bin/python tools/bench_bnb.py [--shapes all|smollm2,tinyllama,llama7b|576x576,...]
      [--runs 7] [--warmup 2] [--threads N] [--json OUT] [--no-nodq]

For every weight shape [out, in] (float32, normal std 0.02, seeded):
  quantize    bnb.functional.quantize_4bit(w, blocksize=64, quant_type="nf4",
              compress_statistics=True)          (what transformers does when loading in 4-bit)
  quantize_nodq   the same with compress_statistics=False (for reference; skip with --no-nodq)
  dequantize  bnb.functional.dequantize_4bit(packed, quant_state) -> float32, including the
              nested (double-quant) absmax decode, as Linear4bit does in every forward
Each op: --warmup untimed runs, then --runs timed runs; the median is reported (and the best
run, which is less sensitive to other processes on the machine; the JSON keeps every run and
the load average before and after each shape).
Rates: quantize GB/s of fp32 input (4*n bytes / s), quantize M params/s, dequantize G elements/s.
torch threads default to the number of cores (os.cpu_count()).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from refstack import check_versions, cpu_model, loadavg, quiet_reference_stack, warn_if_busy, write_json  # noqa: E402

quiet_reference_stack()

PINNED = {"torch": "2.15.0", "bitsandbytes": "0.50.2"}

GROUPS = {
    "smollm2": [(576, 576), (1536, 576), (576, 1536), (192, 576)],
    "tinyllama": [(2048, 2048), (5632, 2048), (2048, 5632), (256, 2048)],
    "llama7b": [(4096, 4096), (11008, 4096), (4096, 11008)],
}


def parse_shapes(s):
    out = []
    for part in s.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "all":
            for g in GROUPS.values():
                out += g
        elif part in GROUPS:
            out += GROUPS[part]
        elif "x" in part:
            a, b = part.split("x")
            out.append((int(a), int(b)))
        else:
            raise SystemExit(f"error: bad shape {part!r} (use OUTxIN, or one of all,{','.join(GROUPS)})")
    seen, uniq = set(), []
    for sh in out:
        if sh not in seen:
            seen.add(sh)
            uniq.append(sh)
    return uniq


def timeit(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--shapes", default="all")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the records here")
    ap.add_argument("--no-nodq", action="store_true", help="skip the compress_statistics=False variant")
    ap.add_argument("--allow-other-versions", action="store_true")
    args = ap.parse_args()
    check_versions(PINNED, args.allow_other_versions)

    import torch
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    torch.set_num_threads(args.threads)
    shapes = parse_shapes(args.shapes)
    common = {"torch": torch.__version__, "bitsandbytes": bnb.__version__, "threads": torch.get_num_threads(),
              "cpu": cpu_model(), "cores": os.cpu_count(), "blocksize": 64, "quant_type": "nf4",
              "runs": args.runs, "warmup": args.warmup}
    warn_if_busy()
    print(f"torch {common['torch']}, bitsandbytes {common['bitsandbytes']}, {common['threads']} threads, "
          f"{common['cpu']}")
    print(f"{'shape':>12} {'n':>10} | {'quant s':>8} {'GB/s':>6} {'Mpar/s':>7} | {'q-noDQ s':>8} {'Mpar/s':>7} "
          f"| {'dequant s':>9} {'Gel/s':>6}")
    records = []
    g = torch.Generator().manual_seed(args.seed)
    for (o, i) in shapes:
        n = o * i
        la0 = loadavg()
        w = (torch.randn(o, i, generator=g, dtype=torch.float32) * 0.02).contiguous()

        def q():
            return F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)

        def qn():
            return F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=False)

        tq, tq_all = timeit(q, args.warmup, args.runs)
        packed, qs = q()
        assert qs.dtype == torch.float32 and qs.nested

        def dq():
            return F.dequantize_4bit(packed, quant_state=qs)

        td, td_all = timeit(dq, args.warmup, args.runs)
        out = dq()
        assert out.dtype == torch.float32 and tuple(out.shape) == (o, i)
        err = float((out - w).abs().max() / w.abs().max())
        rec = dict(common, shape=[o, i], n=n,
                   quantize_seconds=tq, quantize_min_seconds=min(tq_all), quantize_runs=tq_all,
                   quantize_gb_per_s=4 * n / tq / 1e9, quantize_mparams_per_s=n / tq / 1e6,
                   dequantize_seconds=td, dequantize_min_seconds=min(td_all), dequantize_runs=td_all,
                   dequantize_gelems_per_s=n / td / 1e9, dequantize_out_gb_per_s=4 * n / td / 1e9,
                   quantize_best_mparams_per_s=n / min(tq_all) / 1e6,
                   dequantize_best_gelems_per_s=n / min(td_all) / 1e9,
                   max_rel_error=err, loadavg_before=la0)
        if not args.no_nodq:
            tn, tn_all = timeit(qn, args.warmup, args.runs)
            rec.update(quantize_nodq_seconds=tn, quantize_nodq_runs=tn_all,
                       quantize_nodq_mparams_per_s=n / tn / 1e6)
        rec["loadavg_after"] = loadavg()
        records.append(rec)
        nodq = (f"{rec['quantize_nodq_seconds']:8.4f} {rec['quantize_nodq_mparams_per_s']:7.1f}"
                if not args.no_nodq else f"{'-':>8} {'-':>7}")
        print(f"{o:>5}x{i:<6} {n:>10} | {tq:8.4f} {rec['quantize_gb_per_s']:6.3f} "
              f"{rec['quantize_mparams_per_s']:7.1f} | {nodq} | {td:9.4f} {rec['dequantize_gelems_per_s']:6.2f}",
              flush=True)
        del w, packed, qs, out
    if args.json:
        write_json(args.json, records, indent=2)


if __name__ == "__main__":
    main()
