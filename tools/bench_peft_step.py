#!/usr/bin/env python3
"""PyTorch + PEFT baseline for the training-step benchmark: LoRA / QLoRA steps of a random-init
LlamaForCausalLM on this CPU (the configuration of ../shared/MACHINE.md's "What a user would run
instead" table).

Usage:
  /work/refvenv/bin/python tools/bench_peft_step.py --shape small --setting all \\
      [--steps 8] [--warmup 2] [--seq-len 256] [--batch-size 4] [--threads 2] [--json OUT]
  --shape     small      hidden 512, 8 layers, intermediate 1376, 8 heads / 8 kv heads, vocab 32000
              tinyllama  hidden 2048, 22 layers, intermediate 5632, 32 heads / 4 kv heads, vocab 32000
  --setting   fp32       fp32 base weights (frozen), fp32 LoRA
              fp32-ckpt  + gradient checkpointing of every decoder layer (transformers'
                         activation_checkpointing_enable, use_reentrant=False)
              nf4        bitsandbytes NF4 base (blocksize 64, double quant, compute fp32): QLoRA
              nf4-ckpt   + gradient checkpointing
              repeatable, or "all" (the default)
  Smoke test (seconds, not a measurement):
  /work/refvenv/bin/python tools/bench_peft_step.py --shape small --steps 2 --warmup 1 --seq-len 32 --batch-size 1
  Do not run the default sizes on a machine others are using: tinyllama takes minutes per
  setting and up to ~12 GiB.

What one step is (same for every setting):
  LlamaConfig(shape, rms_norm_eps 1e-5, untied lm_head, use_cache False), seeded random init
  (torch.manual_seed(--seed)), fp32; attention is transformers' default (sdpa; recorded).
  PEFT LoraConfig(r=16, lora_alpha=32, lora_dropout=0, bias="none", target_modules q,k,v,o,
  gate,up,down _proj); every base weight frozen (embeddings, norms, lm_head included).
  torch.optim.AdamW(LoRA params, lr=1e-4) with torch's defaults. Batch: random token ids
  (batch x seq, seeded, made before timing), labels = input ids (transformers shifts them).
  step = zero_grad(set_to_none) ; loss = model(input_ids, labels).loss ; loss.backward() ;
  optimizer.step(). torch.set_num_threads(--threads). Model in train() mode throughout (no
  dropout anywhere at these settings; bitsandbytes' Linear4bit must not be run in eval mode on
  this CPU, see tools/check_quantized.py).
  nf4: the same random model is saved once per shape (safetensors, fp32) to a temporary dir by a
  helper process, and each nf4 setting loads it with AutoModelForCausalLM.from_pretrained(dir,
  quantization_config=BitsAndBytesConfig(load_in_4bit, nf4, double quant, compute fp32),
  dtype=float32), as a user would: every decoder linear becomes a bnb Linear4bit (checked),
  lm_head stays fp32 (transformers does not quantize the output embedding).
  Every setting runs in a fresh child process, so memory figures do not mix settings.

Reported per setting: warm-up steps (--warmup) are run and not timed; then --steps timed steps.
  tokens/s     median over the timed steps of batch*seq / step seconds (and the min and max;
               with an even --steps the median averages the two middle rates)
  step_s       median step time (every step's time, warm-up included, is in the JSON)
  GFLOP/s      model math / median step time, where model math per step = batch*seq * F with
               F = 4*P_frozen + 6*P_lora + 12*L*T*C
                 P_frozen: parameters of the frozen linears that take part in the matmuls (the 7
                   projections of every layer and lm_head; not the embedding, a lookup):
                   forward 2*P, backward of the input 2*P, no weight gradient
                 P_lora: LoRA A and B: forward 2*P, input gradient 2*P, weight gradient 2*P
                 12*L*T*C: attention scores Q.K^T and probabilities.V, 2*T*C each per token and
                   layer in the forward, twice that in the backward, over the full T (the dense
                   convention of the PaLM/Megatron formulas; a causal kernel needs about half)
               Gradient checkpointing re-runs every decoder layer's forward during the backward;
               that recomputation is NOT counted in "GFLOP/s" (model math, comparable across
               settings) but is in "hw_GFLOP/s", which adds 2*P_frozen_layers + 2*P_lora + 4*L*T*C
               per token (P_frozen_layers: the decoder projections only; lm_head is not re-run).
               Norms, RoPE, softmax, SwiGLU, cross-entropy and AdamW are not counted.
  memory       rss_before_loop: VmRSS just before the first warm-up step (model + optimizer
                 built, batch made);
               loop_peak: VmHWM over the warm-up and timed steps only; the kernel's peak is reset
                 by writing "5" to /proc/self/clear_refs before the loop (Linux >= 4.0; null if
                 that fails). This is the figure MACHINE.md calls "peak RSS of the training loop";
               process_peak: VmHWM of the whole child process (model build, nf4 loading, loop),
                 read before that reset and at the end (the larger); ru_maxrss (never reset) also
                 recorded. Ours is measured whole-process, which favours PyTorch.
  versions     python, torch, transformers, peft, bitsandbytes, accelerate, MKL/OpenMP info, CPU.

Output: one line per setting on stdout, and with --json OUT a file like benchmarks/results/*.json:
  {"tool": ..., "versions": {...}, "config": {...}, "records": [{setting, tokens_per_s, ...}]}
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from refstack import (check_versions, cpu_model, loadavg, package_versions,  # noqa: E402
                      quiet_reference_stack, warn_if_busy, write_json)

quiet_reference_stack()

PINNED = {"torch": "2.15.0", "transformers": "5.23.0", "peft": "0.21.2", "bitsandbytes": "0.50.2"}

SHAPES = {
    "small": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=8, vocab_size=32000),
    "tinyllama": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                      num_attention_heads=32, num_key_value_heads=4, vocab_size=32000),
}
SETTINGS = ["fp32", "fp32-ckpt", "nf4", "nf4-ckpt"]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_R, LORA_ALPHA = 16, 32
LR = 1e-4
GiB = 1024 ** 3


# ---------------------------------------------------------------- helpers
def versions():
    return {"python": platform.python_version(),
            **package_versions(["torch", "transformers", "peft", "bitsandbytes", "accelerate", "safetensors"])}


def proc_status():
    """VmRSS and VmHWM of this process in bytes (None where /proc is missing)."""
    out = {"VmRSS": None, "VmHWM": None}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                k = line.split(":", 1)[0]
                if k in out:
                    out[k] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def reset_peak_rss():
    """Reset the kernel's VmHWM to the current RSS (Linux >= 4.0). True if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def ru_maxrss_bytes():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def make_config(shape, seq_len):
    from transformers import LlamaConfig
    return LlamaConfig(**SHAPES[shape], max_position_embeddings=max(2048, seq_len), rms_norm_eps=1e-5,
                       tie_word_embeddings=False, use_cache=False, attention_dropout=0.0)


def build_random(shape, seq_len, seed):
    import torch
    from transformers import LlamaForCausalLM
    torch.manual_seed(seed)
    return LlamaForCausalLM(make_config(shape, seq_len)).float()


def flops_per_token(shape, seq_len):
    """Model-math FLOPs per trained token (see the module docstring) and its parts."""
    s = SHAPES[shape]
    C, F, L, V = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"], s["vocab_size"]
    D = C // s["num_attention_heads"]
    Ckv = s["num_key_value_heads"] * D
    # (in, out) of the 7 projections of one layer
    proj = [(C, C), (C, Ckv), (C, Ckv), (C, C), (C, F), (C, F), (F, C)]
    p_layers = L * sum(i * o for i, o in proj)
    p_head = C * V
    p_frozen = p_layers + p_head
    p_lora = L * sum(LORA_R * (i + o) for i, o in proj)
    attn = 12 * L * seq_len * C                      # Q.K^T and P.V, forward + backward, full T
    model = 4 * p_frozen + 6 * p_lora + attn
    recompute = 2 * p_layers + 2 * p_lora + attn // 3  # one more forward of the decoder layers
    return {"P_frozen_linear": p_frozen, "P_frozen_layers": p_layers, "P_lm_head": p_head, "P_lora": p_lora,
            "attention_flops_per_token": attn, "model_flops_per_token": model,
            "ckpt_recompute_flops_per_token": recompute}


# ---------------------------------------------------------------- child: save a random checkpoint
def save_random(args):
    model = build_random(args.shape, args.seq_len, args.seed)
    model.save_pretrained(args.save_random, safe_serialization=True)
    print(f"saved random {args.shape} checkpoint to {args.save_random}", file=sys.stderr)


# ---------------------------------------------------------------- child: one setting
def run_setting(args):
    import torch
    torch.set_num_threads(args.threads)
    import warnings
    import transformers
    from peft import LoraConfig, get_peft_model
    transformers.logging.set_verbosity_error()
    # PEFT 0.21 still reads the deprecated is_gradient_checkpointing property
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    st0 = proc_status()
    setting = args.run_setting
    nf4 = setting.startswith("nf4")
    ckpt = setting.endswith("-ckpt")
    t0 = time.perf_counter()
    if nf4:
        import bitsandbytes as bnb
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
        qc = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=torch.float32)
        model = AutoModelForCausalLM.from_pretrained(args.checkpoint, quantization_config=qc,
                                                     dtype=torch.float32, device_map="cpu")
        n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
        want = SHAPES[args.shape]["num_hidden_layers"] * len(TARGETS)
        if n4 != want:
            sys.exit(f"error: {n4} Linear4bit modules after loading, expected {want}")
        for p in model.parameters():  # non-quantized parameters in fp32 (they already are; be sure)
            if p.dtype in (torch.float16, torch.bfloat16):
                p.data = p.data.float()
    else:
        model = build_random(args.shape, args.seq_len, args.seed)
    model.config.use_cache = False
    load_s = time.perf_counter() - t0
    st_loaded = proc_status()

    if ckpt:  # every decoder layer; transformers 5.23 renamed gradient_checkpointing_enable
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lcfg = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, bias="none",
                      target_modules=TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(trainable, lr=LR)

    B, T = args.batch_size, args.seq_len
    V = SHAPES[args.shape]["vocab_size"]
    g = torch.Generator().manual_seed(args.seed + 1)
    nsteps = args.warmup + args.steps
    batches = [torch.randint(0, V, (B, T), generator=g) for _ in range(nsteps)]

    st_before = proc_status()
    hwm_before_reset = st_before["VmHWM"]
    reset_ok = reset_peak_rss()
    times, losses = [], []
    la0 = loadavg()
    for i in range(nsteps):
        x = batches[i]
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
        losses.append(float(loss.detach()))
    st_after = proc_status()
    timed = times[args.warmup:]
    tok = B * T
    tps = [tok / s for s in timed]
    step_s = statistics.median(timed)
    fl = flops_per_token(args.shape, T)
    model_flops_step = tok * fl["model_flops_per_token"]
    hw_flops_step = model_flops_step + (tok * fl["ckpt_recompute_flops_per_token"] if ckpt else 0)
    peaks = [v for v in (hwm_before_reset, st_after["VmHWM"]) if v is not None]
    rec = {
        "shape": args.shape, "setting": setting, "batch_size": B, "seq_len": T, "tokens_per_step": tok,
        "threads": torch.get_num_threads(), "warmup": args.warmup, "steps": args.steps,
        "tokens_per_s": statistics.median(tps), "tokens_per_s_min": min(tps), "tokens_per_s_max": max(tps),
        "step_s": step_s, "step_s_all": times,
        "model_GFLOPs_per_s": model_flops_step / step_s / 1e9,
        "hw_GFLOPs_per_s": hw_flops_step / step_s / 1e9,
        "model_GFLOP_per_step": model_flops_step / 1e9, "hw_GFLOP_per_step": hw_flops_step / 1e9,
        "flops": fl,
        "losses": losses,
        "rss_start_bytes": st0["VmRSS"],
        "rss_after_load_bytes": st_loaded["VmRSS"],
        "rss_before_loop_bytes": st_before["VmRSS"],
        "loop_peak_rss_bytes": st_after["VmHWM"] if reset_ok else None,
        "process_peak_rss_bytes": max(peaks) if peaks else None,
        "ru_maxrss_bytes": ru_maxrss_bytes(),
        "peak_reset_ok": reset_ok,
        "load_s": load_s,
        "gradient_checkpointing": ckpt, "base": "bnb-nf4-dq" if nf4 else "fp32",
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "params_total": n_total, "params_trainable": n_trainable,
        "loadavg_before": la0, "loadavg_after": loadavg(),
    }
    with open(args.child_json, "w") as f:
        json.dump(rec, f)


# ---------------------------------------------------------------- parent
def gib(b):
    return f"{b / GiB:.2f} GiB" if b is not None else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--setting", action="append", help="fp32, fp32-ckpt, nf4, nf4-ckpt or all (repeatable)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps (default 8)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them (default 2)")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--allow-other-versions", action="store_true")
    # internal (one child process per setting)
    ap.add_argument("--run-setting", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    ap.add_argument("--child-json", help=argparse.SUPPRESS)
    ap.add_argument("--save-random", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.seq_len < 2 or args.batch_size < 1 or args.threads < 1:
        ap.error("need --steps >= 1, --warmup >= 0, --seq-len >= 2, --batch-size >= 1, --threads >= 1")
    if args.save_random:
        return save_random(args)
    if args.run_setting:
        return run_setting(args)

    check_versions(PINNED, args.allow_other_versions)
    settings = []
    for s in args.setting or ["all"]:
        for part in s.split(","):
            part = part.strip()
            if part == "all":
                settings += SETTINGS
            elif part in SETTINGS:
                settings.append(part)
            else:
                ap.error(f"unknown setting {part!r} (use {', '.join(SETTINGS)} or all)")
    settings = list(dict.fromkeys(settings))

    vers = versions()
    warn_if_busy()
    fl = flops_per_token(args.shape, args.seq_len)
    print(f"torch {vers['torch']}, transformers {vers['transformers']}, peft {vers['peft']}, bitsandbytes "
          f"{vers['bitsandbytes']}; {args.threads} threads; {cpu_model()}")
    print(f"shape {args.shape} {SHAPES[args.shape]}, batch {args.batch_size} x seq {args.seq_len}; "
          f"model math {fl['model_flops_per_token'] / 1e6:.1f} MFLOP/token "
          f"(4*{fl['P_frozen_linear'] / 1e6:.2f}M frozen + 6*{fl['P_lora'] / 1e6:.3f}M LoRA + attention "
          f"{fl['attention_flops_per_token'] / 1e6:.2f}M)", flush=True)

    me = [sys.executable, os.path.abspath(__file__)]
    common = ["--shape", args.shape, "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size),
              "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
              "--seed", str(args.seed)]
    records = []
    with tempfile.TemporaryDirectory(prefix="bench_peft_step.") as tmp:
        ckpt_dir = os.path.join(tmp, f"random-{args.shape}")
        if any(s.startswith("nf4") for s in settings):
            t0 = time.perf_counter()
            subprocess.run(me + common + ["--save-random", ckpt_dir], check=True)
            print(f"(random fp32 checkpoint for the nf4 settings saved in {time.perf_counter() - t0:.1f}s)",
                  flush=True)
        for s in settings:
            out = os.path.join(tmp, f"{s}.json")
            r = subprocess.run(me + common + ["--run-setting", s, "--checkpoint", ckpt_dir, "--child-json", out])
            if r.returncode != 0 or not os.path.exists(out):
                print(f"{args.shape:>9} {s:<9}  FAILED (exit code {r.returncode})", flush=True)
                records.append({"shape": args.shape, "setting": s, "error": f"exit code {r.returncode}"})
                continue
            with open(out) as f:
                rec = json.load(f)
            records.append(rec)
            print(f"{args.shape:>9} {s:<9}  {rec['tokens_per_s']:8.1f} tokens/s (min {rec['tokens_per_s_min']:.1f}, "
                  f"max {rec['tokens_per_s_max']:.1f})  step {rec['step_s']:.3f} s  "
                  f"{rec['model_GFLOPs_per_s']:6.1f} GFLOP/s model math"
                  + (f" ({rec['hw_GFLOPs_per_s']:.1f} with recompute)" if rec["gradient_checkpointing"] else "")
                  + f"  | RSS before loop {gib(rec['rss_before_loop_bytes'])}, loop peak "
                  f"{gib(rec['loop_peak_rss_bytes'])}, process peak {gib(rec['process_peak_rss_bytes'])}"
                  f"  | loss {rec['losses'][0]:.3f} -> {rec['losses'][-1]:.3f}", flush=True)

    if args.json:
        doc = {
            "tool": "tools/bench_peft_step.py (PyTorch + PEFT LoRA/QLoRA training step)",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": vers,
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "config": {"shape": args.shape, "model": SHAPES[args.shape], "seq_len": args.seq_len,
                       "batch_size": args.batch_size, "threads": args.threads, "steps": args.steps,
                       "warmup": args.warmup, "seed": args.seed, "lora_r": LORA_R, "lora_alpha": LORA_ALPHA,
                       "lora_dropout": 0.0, "target_modules": TARGETS, "optimizer": f"torch.optim.AdamW(lr={LR})",
                       "flops_formula": "model = tokens * (4*P_frozen_linear + 6*P_lora + 12*L*T*C); "
                                        "hw adds, with gradient checkpointing, tokens * (2*P_frozen_layers + "
                                        "2*P_lora + 4*L*T*C)",
                       "memory": "rss_before_loop = VmRSS before the first step; loop_peak = VmHWM after a "
                                 "clear_refs reset before the loop; process_peak = VmHWM of the whole child "
                                 "process (one process per setting)"},
            "records": records,
        }
        write_json(args.json, doc, indent=1)
    if any("error" in r for r in records):
        sys.exit(1)


if __name__ == "__main__":
    main()
