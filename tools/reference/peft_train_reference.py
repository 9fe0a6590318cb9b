#!/usr/bin/env python3
"""PEFT + bitsandbytes reference for end-to-end QLoRA training: the per-step losses, gradient norms,
final adapter and eval loss that `qlora-train` (run with --no-packing --no-shuffle, constant lr) must
reproduce on the same NF4 checkpoint, initial adapter and pre-tokenized data.

Pinned stack (a different version only warns): torch 2.15.0, transformers 5.23.0, peft 0.21.2,
bitsandbytes 0.50.2 (+ safetensors); run with /work/refvenv/bin/python. Default 2 threads.

Subcommands, as run end to end on SmolLM2-135M-Instruct (our `quantize` output):
  P=/work/refvenv/bin/python; S=tools/reference/peft_train_reference.py; M=out/smollm2-135m-nf4
  $P $S make-data --model $M --output /tmp/peftref/train.jsonl --rows 64 --seed 0 --min-len 16 --max-len 128
  $P $S make-data --model $M --output /tmp/peftref/valid.jsonl --rows 32 --seed 1 --min-len 16 --max-len 128
  $P $S init-adapter --model $M --output /tmp/peftref/init --r 16 --alpha 32 --target-modules all-linear \\
        --seed 0 --random-b 0.01
  $P $S train --model $M --adapter /tmp/peftref/init --data /tmp/peftref/train.jsonl --steps 10 \\
        --batch-size 4 --seq-len 128 --lr 1e-3 --weight-decay 0.0 --max-grad-norm 1.0 \\
        --output /tmp/peftref/run --eval-data /tmp/peftref/valid.jsonl
  $P $S eval --model $M --adapter /tmp/peftref/run/adapter --data /tmp/peftref/valid.jsonl \\
        --batch-size 4 --seq-len 128
  (wall times on a quiet 2-core machine, 2 threads: make-data ~5 s (0.9 GiB RSS), init-adapter ~8 s
  (1.0 GiB), train ~60 s = start-up + two evals of ~10 s + 10 steps of ~3 s (peak 3.1 GiB), eval
  ~17 s (1.4 GiB). Other work on the machine easily makes them 2-5x longer.)
  Result of that run: step losses 4.342360 4.000491 4.164070 3.264347 3.575268 4.193645 4.225101
  4.704186 4.671845 3.656064 (each step a different batch, so not monotonic), eval loss 4.197505
  before -> 3.759591 after; bitwise reproducible (same losses, same adapter bytes).

make-data: the text of --text (default models/text/hamlet.txt) is tokenized once by
  AutoTokenizer.from_pretrained(--model) (its tokenizer.json), add_special_tokens=False. With
  rng = random.Random(--seed): start = rng.randrange(n_tokens); then for each row a length
  L = rng.randint(--min-len, --max-len) and the next L consecutive tokens (the stream wraps around
  the end of the text). labels = input_ids with the first floor(L * --prompt-fraction) positions
  (default 0.25) set to -100. One JSON object per line: {"input_ids": [...], "labels": [...]}.

init-adapter: the 4-bit model is loaded as below, torch.manual_seed(--seed), then
  get_peft_model(model, LoraConfig(r, lora_alpha, lora_dropout=0, bias="none", target_modules,
  use_rslora, task_type="CAUSAL_LM")): PEFT's own init (lora_A kaiming-uniform a=sqrt(5) from the
  global generator, lora_B zero). --random-b STD then sets every lora_B to
  torch.randn(shape, generator=torch.Generator().manual_seed(--seed)) * STD, in named_parameters()
  order (layer 0 q,k,v,o,gate,up,down, layer 1, ...), so step 1 already exercises the adapter path.
  save_pretrained; target_modules in adapter_config.json is sorted (PEFT writes a set, in hash
  order) and PEFT's README.md model card is removed.

train: rows are a stream in file order: step s (0-based) takes rows (s*B + j) mod n_rows, j = 0..B-1
  (wrapping to the start of the file, mid-batch if needed; no shuffle). Each row is truncated to T
  and right-padded to T with id --pad-id (0); attention_mask 1 on real tokens, 0 on padding; labels
  -100 on padding. The loss is transformers' own model(input_ids, attention_mask, labels).loss
  (ForCausalLMLoss: the labels are shifted inside, position t predicts labels[t+1], so label 0 of a
  row is never a target and the last position predicts nothing; cross-entropy of float32 logits
  with reduction "mean" = mean over the step's non-ignored targets of the whole batch; checked
  against our own computation at step 1). Per step: zero_grad(set_to_none) -> forward -> backward
  -> total = clip_grad_norm_(lora params, G) (G = 0: no clipping, total = get_total_norm) ->
  torch.optim.AdamW(lora params, lr, betas (0.9, 0.999), eps 1e-8, weight_decay WD, foreach=False,
  the CPU default single-tensor path).step(). losses[s] is the loss of step s's forward (before
  its update); grad_norms[s] the total gradient L2 norm before clipping. Constant lr, no warmup,
  no accumulation, no dropout (the adapter's lora_dropout must be 0).
  Writes OUT/losses.json {"losses", "grad_norms", "target_tokens", "step_seconds", "eval_loss"
  (with --eval-data; also "eval_loss_initial", before training), "versions", "args", "settings"}
  and OUT/adapter (save_pretrained, post-processed like init-adapter).

eval: eval loss = sum over every target token of the eval rows of -log_softmax(float32 logits)
  (float64 sum) / number of targets; rows batched like train (B rows per batch in file order, no
  wrap, last batch partial; truncated/padded to T), under torch.no_grad(). Prints {"eval_loss",
  "tokens", "rows"} as JSON.

How the 4-bit model is loaded and run (as tools/reference/smollm2_reference.py and
tools/check_quantized.py found correct on these CPUs):
  AutoModelForCausalLM.from_pretrained(DIR) (bitsandbytes Linear4bit, NF4 + double quant), then at
  once model.train(); every non-quantized floating parameter/buffer (embedding = tied lm_head,
  RMSNorm weights, stored float16 in our checkpoint) upcast in place to float32; every
  Linear4bit's compute_dtype set to float32 (the checkpoint's config says float16).
  * The model is NEVER put in eval() mode, also not for the eval loss: bitsandbytes 0.50.2's
    Linear4bit, when not training and its input does not require grad, repacks its weight in place
    into a bf16 inference layout on AVX512-BF16 CPUs (these machines), computes in bf16 and fails
    when in_features % 64 != 0. Llama has no dropout at attention_dropout = 0 and lora_dropout = 0,
    so train() computes the same function; eval runs in train() mode under no_grad. (Measured on
    the example: an eval()-mode eval loss differs by 1.1e-4 relative, and the repack is permanent:
    later train-mode forwards of that model also take the bf16 path.)
  * bitsandbytes' forward (gemm_4bit) dequantizes the weight to the input's dtype, float32. Its
    backward (MatMul4Bit.backward) dequantizes to quant_state.dtype, the checkpoint's ORIGINAL dtype
    ("dtype" in the quant_state JSON: float16 for our SmolLM2 checkpoint), and then casts to float32:
    the input gradients use fp16-rounded weights (about 5e-4 relative per weight). That is what a
    PEFT user gets and the default here (--backward-weights stored); --backward-weights float32 sets
    quant_state.dtype = float32 so forward and backward use the same float32 weights.
  * bnb's native CPU dequantize_4bit mis-scales weights whose rows straddle 64-blocks
    (in_features % 64 != 0; see make_model_fixtures.py). By default (--nf4-dequant auto) every
    weight is dequantized both ways at load; if any differs, bnb's generic (CUDA-semantics) kernel
    is registered as the CPU kernel. For SmolLM2-135M (in_features 576 / 1536) they are identical.
  Attention: transformers' default (sdpa); --attn-implementation eager is the plain
  softmax(QK^T)V (memory grows with B*heads*T^2*layers). use_cache=False everywhere.
  peft's prepare_model_for_kbit_training is not called: it would upcast the same non-quantized
  parameters to float32 and turn on gradient checkpointing (same function, slower).
  PeftModel.from_pretrained(model, ADAPTER, is_trainable=True): every loaded LoRA tensor is checked
  against adapter_model.safetensors (PEFT only warns about missing/unexpected keys, silently keeping
  its fresh init), only lora_A/lora_B may train, all float32.
"""
import argparse
import json
import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refstack import check_versions, quiet_reference_stack  # noqa: E402

quiet_reference_stack()

PINNED = {"torch": "2.15.0", "transformers": "5.23.0", "peft": "0.21.2", "bitsandbytes": "0.50.2",
          "safetensors": None}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_TEXT = os.path.join(REPO, "models", "text", "hamlet.txt")
ALL_SEVEN = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the reference stack

def import_stack(threads):
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    import warnings
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    return torch


def generic_nf4_dequantize_kernel():
    """bnb's generic dequantize_4bit (backends/default/ops.py, CUDA semantics), CPU-kernel signature."""
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.backends.utils import _get_4bit_code
    import torch
    compute = getattr(_dequantize_4bit_compute, "__wrapped__", _dequantize_4bit_compute)  # no torch.compile

    def kernel(A, absmax, blocksize, quant_type, shape, dtype):
        A = A.view(torch.uint8) if A.dtype != torch.uint8 else A
        return compute(A.reshape(-1), absmax, _get_4bit_code(quant_type, A.device), blocksize, shape, dtype)
    return kernel


def load_4bit_model(model_dir, args):
    """The 4-bit model in train() mode, computing in float32 (see the module docstring)."""
    import torch
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbF
    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=args.attn_implementation)
    model.train()  # before any forward: never an eval-mode Linear4bit on this CPU
    model.config.use_cache = False
    upcast, linears = set(), {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            for pn, p in list(mod.named_parameters(recurse=False)):
                if isinstance(p, bnb.nn.Params4bit):
                    continue
                if p.is_floating_point() and p.dtype != torch.float32:
                    upcast.add(str(p.dtype).removeprefix("torch."))
                    p.data = p.data.float()  # the tied lm_head shares this Parameter
            for bn, b in list(mod.named_buffers(recurse=False)):
                if b is not None and b.is_floating_point() and b.dtype != torch.float32:
                    setattr(mod, bn, b.float())
            if isinstance(mod, bnb.nn.Linear4bit):
                linears[name] = mod
                mod.compute_dtype = torch.float32
                mod.compute_type_is_set = True
    if not linears:
        sys.exit(f"error: no bitsandbytes Linear4bit in {model_dir}: not a 4-bit checkpoint")

    stored_dtypes = sorted({str(m.weight.quant_state.dtype).removeprefix("torch.") for m in linears.values()})
    if args.backward_weights == "float32":
        for m in linears.values():
            m.weight.quant_state.dtype = torch.float32

    # native vs generic NF4 dequantization (bnb's native CPU kernel mis-scales rows straddling blocks)
    generic = generic_nf4_dequantize_kernel()
    max_diff, bad_shapes = 0.0, set()
    if args.nf4_dequant in ("auto", "generic"):
        for m in linears.values():
            st = m.weight.quant_state
            absmax = bnbF.dequantize_blockwise(st.absmax, st.state2) + st.offset if st.nested else st.absmax
            nat = torch.ops.bitsandbytes.dequantize_4bit.default(m.weight.data, absmax, st.blocksize,
                                                                   st.quant_type, st.shape, torch.float32)
            gen = generic(m.weight.data, absmax, st.blocksize, st.quant_type, st.shape, torch.float32)
            d = (nat - gen).abs().max().item()
            if d > 0:
                bad_shapes.add(tuple(st.shape))
                max_diff = max(max_diff, d)
    use_generic = args.nf4_dequant == "generic" or (args.nf4_dequant == "auto" and bad_shapes)
    if use_generic:
        torch.library.register_kernel("bitsandbytes::dequantize_4bit", "cpu", generic)
        if bad_shapes:
            log(f"note: bnb's native CPU NF4 dequantization differs from the generic one by up to {max_diff:.3g} "
                f"for shapes {sorted(bad_shapes)}: using the generic kernel")
    first = next(iter(linears.values()))
    info = {
        "linear4bit": len(linears),
        "upcast_to_float32": sorted(upcast),
        "quant_state_dtype_stored": stored_dtypes,
        "backward_weights": (args.backward_weights if args.backward_weights == "float32"
                             else f"stored ({'/'.join(stored_dtypes)} dequantization, cast to float32)"),
        "nf4_dequant": "generic" if use_generic else "native",
        "native_vs_generic_max_diff": max_diff if args.nf4_dequant != "native" else None,
        "avx512bf16_repack_possible_in_eval": bool(getattr(first, "support_avx512bf16_for_cpu", False)),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "load_s": time.perf_counter() - t0,
    }
    return model, info


def lora_parameters(peft_model):
    """{adapter_model.safetensors key: parameter} of the trainable parameters (LoRA A/B only)."""
    import torch
    params = {}
    for name, p in peft_model.named_parameters():
        if not p.requires_grad:
            continue
        if ".lora_A.default." not in name and ".lora_B.default." not in name:
            sys.exit(f"error: unexpected trainable parameter {name}")
        if p.dtype != torch.float32:
            sys.exit(f"error: LoRA parameter {name} is {p.dtype}, expected float32")
        params[name.replace(".default.", ".")] = p
    if not params:
        sys.exit("error: no trainable LoRA parameters")
    return params


def load_peft(model_dir, adapter_dir, args):
    """4-bit base + PeftModel.from_pretrained(adapter, is_trainable=True), the file checked tensor by tensor."""
    import torch
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from safetensors import safe_open

    cfg_path = os.path.join(adapter_dir, "adapter_config.json")
    st_path = os.path.join(adapter_dir, "adapter_model.safetensors")
    for p in (cfg_path, st_path):
        if not os.path.isfile(p):
            sys.exit(f"error: {p} not found")
    with open(cfg_path) as f:
        acfg = json.load(f)
    if acfg.get("peft_type") != "LORA":
        sys.exit(f"error: {cfg_path}: peft_type {acfg.get('peft_type')!r}, expected LORA")
    if float(acfg.get("lora_dropout", 0) or 0) != 0:
        sys.exit(f"error: {cfg_path}: lora_dropout {acfg['lora_dropout']} (must be 0 for a deterministic reference)")
    if acfg.get("use_dora"):
        sys.exit(f"error: {cfg_path}: use_dora is set (not supported here)")

    model, info = load_4bit_model(model_dir, args)
    peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    peft_model.train()
    params = lora_parameters(peft_model)
    with safe_open(st_path, "pt") as f:
        keys = set(f.keys())
        if keys != set(params):
            missing, extra = sorted(set(params) - keys), sorted(keys - set(params))
            sys.exit(f"error: {st_path} does not match the model's LoRA parameters: "
                     f"{len(missing)} not in the file (e.g. {missing[:3]}), "
                     f"{len(extra)} not in the model (e.g. {extra[:3]})")
        for k in sorted(keys):
            t = f.get_tensor(k)
            if t.dtype != torch.float32 or tuple(t.shape) != tuple(params[k].shape) \
                    or not torch.equal(t, params[k].detach()):
                sys.exit(f"error: {k}: the loaded parameter differs from the file "
                         f"({t.dtype} {tuple(t.shape)} vs {tuple(params[k].shape)})")
    scalings = sorted({m.scaling["default"] for m in peft_model.modules() if isinstance(m, LoraLayer)})
    r, alpha = acfg["r"], acfg["lora_alpha"]
    want = alpha / (math.sqrt(r) if acfg.get("use_rslora") else r)
    if any(abs(s - want) > 1e-12 for s in scalings):
        log(f"warning: LoRA scalings {scalings} (expected {want}: rank_pattern/alpha_pattern in the config?)")
    info["adapter"] = {"r": r, "lora_alpha": alpha, "use_rslora": bool(acfg.get("use_rslora")),
                       "scaling": scalings, "target_modules": acfg.get("target_modules"),
                       "lora_modules": len([k for k in params if ".lora_A." in k]),
                       "trainable_parameters": sum(p.numel() for p in params.values())}
    return peft_model, params, info


def save_adapter(peft_model, out_dir):
    """save_pretrained, then target_modules sorted and PEFT's README.md removed (deterministic output)."""
    peft_model.save_pretrained(out_dir)
    readme = os.path.join(out_dir, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    cfg_path = os.path.join(out_dir, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(cfg_path, "w") as f:  # PEFT's own formatting (peft/config.py save_pretrained)
        f.write(json.dumps(cfg, indent=2, sort_keys=True))


# ---------------------------------------------------------------- data

def read_rows(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            ids, labels = r.get("input_ids"), r.get("labels")
            if not isinstance(ids, list) or not isinstance(labels, list) or len(ids) != len(labels) or not ids:
                sys.exit(f"error: {path}:{n}: need non-empty input_ids and labels of the same length")
            rows.append((ids, labels))
    if not rows:
        sys.exit(f"error: {path}: no rows")
    return rows


def make_batch(rows, T, pad_id):
    """Rows truncated to T, right-padded to T: input_ids (pad_id), attention_mask (0), labels (-100)."""
    import torch
    B = len(rows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for b, (ids, lab) in enumerate(rows):
        n = min(len(ids), T)
        input_ids[b, :n] = torch.tensor(ids[:n])
        attention_mask[b, :n] = 1
        labels[b, :n] = torch.tensor(lab[:n])
    return input_ids, attention_mask, labels


def summed_nll(logits, labels):
    """(sum of -log softmax over the shifted non-ignored targets, float64; count): HF's shift."""
    import torch
    import torch.nn.functional as F
    shift = labels[:, 1:]
    lg = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    nll = F.cross_entropy(lg, shift.reshape(-1), ignore_index=-100, reduction="none")
    keep = shift.reshape(-1) != -100
    return float(nll[keep].double().sum()), int(keep.sum())


def eval_loss(model, rows, B, T, pad_id):
    """Token-weighted mean NLL over all targets of rows, batched B at a time in order (no wrap)."""
    import torch
    total, count = 0.0, 0
    model.train()  # see the docstring: eval() would repack bnb weights on this CPU; no dropout anyway
    with torch.no_grad():
        for i in range(0, len(rows), B):
            input_ids, attention_mask, labels = make_batch(rows[i:i + B], T, pad_id)
            logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
            s, c = summed_nll(logits, labels)
            total, count = total + s, count + c
    if count == 0:
        sys.exit("error: the eval data has no target tokens")
    return total / count, count


# ---------------------------------------------------------------- subcommands

def cmd_make_data(args):
    from transformers import AutoTokenizer
    import transformers
    transformers.logging.set_verbosity_error()
    if not 1 <= args.min_len <= args.max_len:
        sys.exit("error: need 1 <= --min-len <= --max-len")
    if not 0 <= args.prompt_fraction < 1:
        sys.exit("error: need 0 <= --prompt-fraction < 1")
    tok = AutoTokenizer.from_pretrained(args.model)
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) < args.max_len:
        sys.exit(f"error: {args.text} has only {len(ids)} tokens")
    rng = random.Random(args.seed)
    pos = rng.randrange(len(ids))
    start = pos
    os.makedirs(os.path.dirname(os.path.abspath(args.output)) or ".", exist_ok=True)
    n_targets = 0
    with open(args.output, "w") as f:
        for _ in range(args.rows):
            L = rng.randint(args.min_len, args.max_len)
            row = [ids[(pos + i) % len(ids)] for i in range(L)]
            pos = (pos + L) % len(ids)
            k = int(L * args.prompt_fraction)
            labels = [-100] * k + row[k:]
            n_targets += sum(1 for x in labels[1:] if x != -100)
            f.write(json.dumps({"input_ids": row, "labels": labels}) + "\n")
    log(f"wrote {args.output}: {args.rows} rows from token {start} of {len(ids)} in {args.text}; "
        f"{n_targets} targets after the HF shift")


def cmd_init_adapter(args):
    torch = import_stack(args.threads)
    from peft import LoraConfig, get_peft_model
    model, info = load_4bit_model(args.model, args)
    tm = args.target_modules
    target = "all-linear" if tm == "all-linear" else [t.strip() for t in tm.split(",") if t.strip()]
    alpha = int(args.alpha) if float(args.alpha).is_integer() else args.alpha  # PEFT writes 32, not 32.0
    lcfg = LoraConfig(r=args.r, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=target,
                      use_rslora=args.use_rslora, task_type="CAUSAL_LM")
    torch.manual_seed(args.seed)  # PEFT draws lora_A (kaiming-uniform) from the global generator
    peft_model = get_peft_model(model, lcfg)
    params = lora_parameters(peft_model)
    if args.random_b is not None:
        g = torch.Generator().manual_seed(args.seed)
        with torch.no_grad():
            for k, p in params.items():  # named_parameters() order
                if ".lora_B." in k:
                    p.copy_(torch.randn(p.shape, generator=g) * args.random_b)
    peft_model.peft_config["default"].base_model_name_or_path = args.model
    save_adapter(peft_model, args.output)
    n_a = sum(".lora_A." in k for k in params)
    log(f"wrote {args.output}: {n_a} LoRA modules, {sum(p.numel() for p in params.values())} parameters, "
        f"r={args.r} alpha={alpha} rslora={args.use_rslora} lora_B="
        f"{'randn*%g' % args.random_b if args.random_b is not None else 'zero'}")


def cmd_train(args):
    torch = import_stack(args.threads)
    rows = read_rows(args.data)
    eval_rows = read_rows(args.eval_data) if args.eval_data else None
    torch.manual_seed(args.seed)
    peft_model, params, info = load_peft(args.model, args.adapter, args)
    log(f"loaded in {info['load_s']:.1f}s: {info['linear4bit']} Linear4bit, "
        f"{info['adapter']['lora_modules']} LoRA modules, {info['adapter']['trainable_parameters']} trainable")
    plist = list(params.values())
    opt = torch.optim.AdamW(plist, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay,
                            foreach=False)
    B, T = args.batch_size, args.seq_len

    result = {"losses": [], "grad_norms": [], "target_tokens": [], "step_seconds": []}
    if eval_rows is not None:
        t0 = time.perf_counter()
        result["eval_loss_initial"], _ = eval_loss(peft_model, eval_rows, B, T, args.pad_id)
        log(f"eval loss before training {result['eval_loss_initial']:.6f} ({time.perf_counter() - t0:.1f}s)")
    peft_model.train()
    loss_check = None
    t_train = time.perf_counter()
    for step in range(args.steps):
        batch_rows = [rows[(step * B + j) % len(rows)] for j in range(B)]
        input_ids, attention_mask, labels = make_batch(batch_rows, T, args.pad_id)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = peft_model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False)
        loss = out.loss
        if step == 0:  # transformers' loss is the mean over the batch's shifted non-ignored targets
            s, c = summed_nll(out.logits.detach(), labels)
            loss_check = abs(s / c - loss.item()) / max(abs(loss.item()), 1e-30)
            if loss_check > 1e-5:
                sys.exit(f"error: model loss {loss.item()} is not the token mean {s / c} of its targets")
        n_targets = int((labels[:, 1:] != -100).sum())
        if n_targets == 0:
            sys.exit(f"error: step {step + 1} has no target tokens (the loss would be NaN)")
        del out
        loss.backward()
        if args.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(plist, args.max_grad_norm)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in plist if p.grad is not None])
        opt.step()
        dt = time.perf_counter() - t0
        result["losses"].append(loss.item())
        result["grad_norms"].append(norm.item())
        result["target_tokens"].append(n_targets)
        result["step_seconds"].append(dt)
        log(f"step {step + 1:4d}  loss {loss.item():.6f}  grad norm {norm.item():.6f}  "
            f"targets {n_targets}  {dt:.2f}s")
    train_s = time.perf_counter() - t_train
    os.makedirs(args.output, exist_ok=True)
    save_adapter(peft_model, os.path.join(args.output, "adapter"))
    if eval_rows is not None:
        t0 = time.perf_counter()
        result["eval_loss"], result["eval_tokens"] = eval_loss(peft_model, eval_rows, B, T, args.pad_id)
        log(f"eval loss after training {result['eval_loss']:.6f} over {result['eval_tokens']} tokens "
            f"({time.perf_counter() - t0:.1f}s)")
    import resource
    result.update({
        "versions": VERSIONS,
        "args": vars(args),
        "settings": {
            **info,
            "rows": len(rows), "batching": "step s takes rows (s*B+j) mod n_rows; truncate/right-pad to T",
            "loss": "model(input_ids, attention_mask, labels).loss (mean over shifted targets != -100)",
            "loss_check_rel_diff_step1": loss_check,
            "optimizer": {k: v for k, v in opt.defaults.items()
                          if isinstance(v, (int, float, bool, str, tuple, type(None)))},
            "clip": f"clip_grad_norm_(max_norm={args.max_grad_norm})" if args.max_grad_norm > 0 else "none",
            "threads": torch.get_num_threads(),
            "train_s": train_s,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        },
    })
    path = os.path.join(args.output, "losses.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    first, last = result["losses"][0], result["losses"][-1]
    log(f"wrote {path} and {os.path.join(args.output, 'adapter')}: loss {first:.6f} -> {last:.6f} "
        f"in {args.steps} steps ({train_s:.1f}s)")


def cmd_eval(args):
    torch = import_stack(args.threads)
    rows = read_rows(args.data)
    peft_model, _, info = load_peft(args.model, args.adapter, args)
    t0 = time.perf_counter()
    loss, tokens = eval_loss(peft_model, rows, args.batch_size, args.seq_len, args.pad_id)
    log(f"eval of {args.adapter}: {time.perf_counter() - t0:.1f}s")
    print(json.dumps({"eval_loss": loss, "tokens": tokens, "rows": len(rows), "adapter": args.adapter,
                      "batch_size": args.batch_size, "seq_len": args.seq_len,
                      "backward_weights": info["backward_weights"], "nf4_dequant": info["nf4_dequant"],
                      "threads": torch.get_num_threads()}))


# ---------------------------------------------------------------- CLI

VERSIONS = None


def main():
    global VERSIONS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def model_opts(p):
        p.add_argument("--model", required=True, help="bitsandbytes NF4 checkpoint dir (our quantize output)")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--attn-implementation", default="sdpa", choices=["sdpa", "eager"])
        p.add_argument("--backward-weights", default="stored", choices=["stored", "float32"],
                       help="dtype bnb dequantizes to in the backward: the checkpoint's stored dtype (bnb's "
                            "behaviour, default) or float32 (same weights as the forward)")
        p.add_argument("--nf4-dequant", default="auto", choices=["auto", "native", "generic"])

    def data_opts(p):
        p.add_argument("--batch-size", type=int, required=True)
        p.add_argument("--seq-len", type=int, required=True)
        p.add_argument("--pad-id", type=int, default=0)

    p = sub.add_parser("make-data", help="pre-tokenized JSONL rows from a text file")
    p.add_argument("--model", required=True, help="dir with tokenizer.json")
    p.add_argument("--output", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-len", type=int, default=16)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--prompt-fraction", type=float, default=0.25, help="leading fraction of labels set to -100")
    p.add_argument("--text", default=DEFAULT_TEXT)

    p = sub.add_parser("init-adapter", help="PEFT's initial LoRA adapter for the 4-bit model")
    model_opts(p)
    p.add_argument("--output", required=True)
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--target-modules", default="all-linear", help="all-linear or a comma list (q_proj,v_proj)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--use-rslora", action="store_true")
    p.add_argument("--random-b", type=float, metavar="STD", help="lora_B = randn * STD (seeded) instead of 0")

    p = sub.add_parser("train", help="N AdamW steps of PEFT QLoRA; losses.json + final adapter")
    model_opts(p)
    data_opts(p)
    p.add_argument("--adapter", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=0.0, help="0: no clipping")
    p.add_argument("--output", required=True)
    p.add_argument("--eval-data")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("eval", help="eval loss of an adapter in PEFT (prints JSON)")
    model_opts(p)
    data_opts(p)
    p.add_argument("--adapter", required=True)
    p.add_argument("--data", required=True)

    args = ap.parse_args()
    for k, least in (("batch_size", 1), ("seq_len", 2), ("steps", 1), ("threads", 1), ("rows", 1), ("r", 1)):
        if getattr(args, k, least) < least:
            ap.error(f"--{k.replace('_', '-')} must be >= {least}")
    VERSIONS = check_versions(PINNED, allow_other=True)  # warns on stderr on a mismatch
    {"make-data": cmd_make_data, "init-adapter": cmd_init_adapter, "train": cmd_train,
     "eval": cmd_eval}[args.cmd](args)


if __name__ == "__main__":
    main()
