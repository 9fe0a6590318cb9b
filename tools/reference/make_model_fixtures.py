#!/usr/bin/env python3
"""Writes the golden fixtures of the model layer: per-op forward/backward fixtures and whole-model
QLoRA fixtures (logits, loss, every LoRA gradient, one AdamW step, a 10-step loss trajectory) of
tiny random Llama-family models wrapped in PEFT LoRA, each over an fp32 base and over a
bitsandbytes NF4 (double-quant) base. The Swift model must match these; it never runs Python.

Run (about a minute on 2 cores):
    /work/refvenv/bin/python tools/reference/make_model_fixtures.py
Pinned: torch 2.15.0, bitsandbytes 0.50.2, transformers 5.23.0, peft 0.21.2 (see README.md here).

Writes
  Tests/Fixtures/ops/{data.bin, manifest.json}          rmsnorm, rope, attention, swiglu, cross_entropy
  Tests/Fixtures/model-<case>/base/                      fp32 checkpoint (save_pretrained, safetensors)
  Tests/Fixtures/model-<case>/base-nf4/                  the same weights as transformers' bnb 4-bit checkpoint
  Tests/Fixtures/model-<case>/adapter/                   the initial PEFT LoRA adapter
  Tests/Fixtures/model-<case>/{data.bin, manifest.json}  batch, logits, losses, grads, parameters after step 1
for the cases llama-gqa, llama3-tied-packed (llama3 RoPE scaling, rsLoRA, packed rows) and
qwen2-bias (q/k/v biases, tied embeddings).

Conventions of the model fixtures (all arrays little-endian, row-major):
  input_ids, targets, position_ids, sequence_ids: int32 (B, T). targets[b, t] is the token to predict
  at position t (-100 = ignored); the loss is
      F.cross_entropy(logits.view(-1, V).float(), targets.view(-1), ignore_index=-100)  (mean over kept).
  Token (b, i) attends token (b, j) iff sequence_ids[b, j] == sequence_ids[b, i] and j <= i: the model
  gets that block-diagonal causal mask as a 4D float mask (0 / finfo(float32).min), eager attention.
  <base>.grad.<key>, <base>.after1.<key>, <base>.adam_m.<key>, <base>.adam_v.<key>: <key> is the
  name in adapter_model.safetensors (lora_A (r, in), lora_B (out, r)); after1/adam_* are after the
  first torch.optim.AdamW step (lr 1e-3, other arguments at torch's defaults).

Op fixtures (float32 unless noted; forward with transformers' own functions, backward by autograd
with a random upstream gradient `dout`): rmsnorm (LlamaRMSNorm), rope (LlamaRotaryEmbedding +
apply_rotary_pos_emb; x is (B*T, heads, head_dim), int32 position_ids restart mid-row, cos/sin tables
(positions, head_dim/2), inv_freq of the default and llama3 rope init), attention
(eager_attention_forward with repeat_kv; q (B*T, H, D), k/v (B*T, Hkv, D), int32 sequence_ids (B*T,)
per row), swiglu (ACT2FN["silu"](gate) * up), cross_entropy (int32 targets, two -100). Shapes and
constants are in each manifest's meta.

NF4 note: bitsandbytes' native CPU kernel `dequantize_4bit` (used by Linear4bit on CPU in train mode,
forward and backward) mis-scales weights of some shapes whose rows straddle 64-blocks (here
(64,176) in llama-gqa and (96,96), (48,96), (160,96), (96,160) in qwen2-bias: up to 0.21 abs error
against bnb's own generic path, moving the logits by up to 3). The model fixtures therefore register
bnb's generic implementation (`backends/default/ops.py` `_dequantize_4bit_compute`, the CUDA
semantics, Sources/QLoRAQuant/FORMAT.md) as the CPU kernel; the script checks that the NF4 logits
equal an fp32 model over those dequantized weights, and meta.nf4_dequant records what the native
kernel would have changed.

Keep the model in train() mode: in eval mode under no_grad, Linear4bit on AVX512-BF16 CPUs repacks
the weight and fails when in_features % 64 != 0 (dropout is 0, so train mode changes nothing else).
"""
import copy
import ctypes
import json
import math
import os
import shutil
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

from fixture_writer import ROOT, FixtureWriter, git_hash, installed_versions
from refstack import INSTALL_PINNED, check_versions

PINNED = {"torch": "2.15.0", "bitsandbytes": "0.50.2", "transformers": "5.23.0", "peft": "0.21.2"}
check_versions(PINNED, hint=INSTALL_PINNED)

import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as bnbF  # noqa: E402
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute  # noqa: E402
from bitsandbytes.backends.utils import _get_4bit_code  # noqa: E402
from bitsandbytes.cextension import lib as bnb_lib  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import (AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig,  # noqa: E402
                          Qwen2Config)
from transformers.activations import ACT2FN  # noqa: E402
from transformers.models.llama.modeling_llama import (LlamaRMSNorm, LlamaRotaryEmbedding,  # noqa: E402
                                                      apply_rotary_pos_emb, eager_attention_forward)

B, T = 2, 16
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, bias="none")
LR = 1e-3
STEPS = 10
ALL_SEVEN = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
THREADS = 2
BNB_CONFIG = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                  bnb_4bit_compute_dtype=torch.float32)
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8}


# ---------------------------------------------------------------- NF4 dequantization on CPU

_generic_dequantize = _dequantize_4bit_compute.__wrapped__  # bnb's generic path, without torch.compile


def generic_dequantize_4bit(A, absmax, blocksize, quant_type, shape, dtype):
    """bnb `backends/default/ops.py` dequantize_4bit: blocks over the flattened weight."""
    A = A.view(torch.uint8) if A.dtype != torch.uint8 else A
    return _generic_dequantize(A.reshape(-1), absmax, _get_4bit_code(quant_type, A.device), blocksize, shape, dtype)


def native_dequantize_4bit(A, absmax, blocksize, quant_type, shape, dtype):
    """bnb `backends/cpu/ops.py` dequantize_4bit for nf4/float32 (the native kernel), kept callable for
    the diagnostic after the op is re-registered."""
    assert quant_type == "nf4" and dtype == torch.float32 and shape[-1] % 2 == 0
    m, n = math.prod(shape[:-1]), shape[-1]
    A = A.view(torch.uint8).reshape(m, n // 2).contiguous()
    absmax = absmax.float().contiguous()
    out = torch.empty(tuple(shape), dtype=dtype)
    bnb_lib.cdequantize_blockwise_cpu_nf4_fp32(bnbF.get_ptr(A), bnbF.get_ptr(absmax), bnbF.get_ptr(out),
                                               ctypes.c_longlong(blocksize), ctypes.c_longlong(m),
                                               ctypes.c_longlong(n))
    return out


def use_generic_nf4_dequantization():
    """Check that the mirror above is the native kernel, measure how far it is from the generic path on
    a 64x176 weight (it picks the wrong absmax block for some elements of rows that straddle
    64-blocks), then register the generic path as bnb's CPU kernel. Returns that distance."""
    w = torch.randn(64, 176, generator=torch.Generator().manual_seed(5)) * 0.1
    packed, state = bnbF.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    absmax = bnbF.dequantize_blockwise(state.absmax, state.state2) + state.offset
    native = bnbF.dequantize_4bit(packed, state)
    assert torch.equal(native, native_dequantize_4bit(packed, absmax, 64, "nf4", state.shape, torch.float32))
    generic = generic_dequantize_4bit(packed, absmax, 64, "nf4", state.shape, torch.float32)
    native_error = (native - generic).abs().max().item()
    torch.library.register_kernel("bitsandbytes::dequantize_4bit", "cpu", generic_dequantize_4bit)
    assert torch.equal(bnbF.dequantize_4bit(packed, state), generic)
    return native_error


def nf4_absmax(state):
    return bnbF.dequantize_blockwise(state.absmax, state.state2) + state.offset


# ---------------------------------------------------------------- per-op fixtures

def grads_of(out, inputs, generator):
    """A random upstream gradient dout and the gradients of sum(out * dout) w.r.t. inputs."""
    dout = torch.randn(out.shape, generator=generator)
    grads = torch.autograd.grad(out, inputs, dout)
    return dout, grads


def block_causal_mask(sequence_ids):
    """(B, T) example ids -> (B, 1, T, T) float mask: 0 where j <= i in the same example, else finfo.min."""
    same = sequence_ids[:, :, None] == sequence_ids[:, None, :]
    causal = torch.ones(sequence_ids.shape[1], sequence_ids.shape[1], dtype=torch.bool).tril()
    allowed = same & causal
    return torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)[:, None]


def f32(t):
    return t.detach().to(torch.float32).contiguous().numpy()


def i32(t):
    return t.detach().to(torch.int32).contiguous().numpy()


def op_fixtures():
    g = torch.Generator().manual_seed(20240)
    w = FixtureWriter("ops", {"versions": installed_versions(PINNED), "git": git_hash(), "threads": THREADS,
                              "script": "tools/reference/make_model_fixtures.py"})

    # RMSNorm: transformers LlamaRMSNorm, out = weight * x * rsqrt(mean(x^2) + eps).
    eps = 1e-5
    norm = LlamaRMSNorm(72, eps=eps)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(72, generator=g))
    x = torch.randn(5, 72, generator=g, requires_grad=True)
    out = norm(x)
    dout, (dx,) = grads_of(out, [x], g)
    for name, t in [("x", x), ("weight", norm.weight), ("out", out), ("dout", dout), ("dx", dx)]:
        w.add(f"rmsnorm.{name}", f32(t))
    w.meta["rmsnorm"] = {"eps": eps, "rows": 5, "dim": 72}

    # RoPE: LlamaRotaryEmbedding + apply_rotary_pos_emb (rotate_half layout), rows = B*T, B=2, T=7.
    def rope_config(rope_parameters):
        return LlamaConfig(hidden_size=48, num_attention_heads=3, num_key_value_heads=3, head_dim=16,
                           intermediate_size=64, vocab_size=32, num_hidden_layers=1, max_position_embeddings=32,
                           rope_parameters=rope_parameters)
    rotary = LlamaRotaryEmbedding(rope_config({"rope_type": "default", "rope_theta": 10000.0}))
    rotary_llama3 = LlamaRotaryEmbedding(rope_config(dict(LLAMA3_ROPE)))
    assert rotary.attention_scaling == 1.0 and rotary_llama3.attention_scaling == 1.0
    unscaled = LlamaRotaryEmbedding(rope_config({"rope_type": "default", "rope_theta": 500000.0})).inv_freq
    assert not torch.equal(unscaled, rotary_llama3.inv_freq), "llama3 scaling changed nothing at head_dim 16"
    position_ids = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 0, 1, 2, 3])  # row 1 restarts at its 4th token
    x = torch.randn(14, 3, 16, generator=g, requires_grad=True)
    cos, sin = rotary(x, position_ids[None])  # (1, 14, 16)
    out, _ = apply_rotary_pos_emb(x, x.detach(), cos[0], sin[0], unsqueeze_dim=1)
    dout, (dx,) = grads_of(out, [x], g)
    table_cos, table_sin = rotary(x, torch.arange(7)[None])
    for table in (table_cos[0], table_sin[0]):  # cat((freqs, freqs)): both halves hold the same table
        assert torch.equal(table[:, :8], table[:, 8:])
    w.add("rope.x", f32(x))
    w.add("rope.position_ids", i32(position_ids))
    w.add("rope.out", f32(out))
    w.add("rope.dout", f32(dout))
    w.add("rope.dx", f32(dx))
    w.add("rope.inv_freq.default", f32(rotary.inv_freq))
    w.add("rope.inv_freq.llama3", f32(rotary_llama3.inv_freq))
    w.add("rope.cos", f32(table_cos[0, :, :8]))
    w.add("rope.sin", f32(table_sin[0, :, :8]))
    w.meta["rope"] = {"B": 2, "T": 7, "heads": 3, "head_dim": 16, "theta": 10000.0,
                      "llama3": LLAMA3_ROPE, "layout": "x (B*T, heads, head_dim); rotate_half: out[:D/2] = "
                      "x1*cos - x2*sin, out[D/2:] = x2*cos + x1*sin; cos/sin (positions, D/2)"}

    # Attention: eager_attention_forward (repeat_kv, softmax in fp32) with a block-diagonal causal mask.
    Bq, Tq, H, Hkv, D = 2, 9, 4, 2, 8
    q = torch.randn(Bq * Tq, H, D, generator=g, requires_grad=True)
    k = torch.randn(Bq * Tq, Hkv, D, generator=g, requires_grad=True)
    v = torch.randn(Bq * Tq, Hkv, D, generator=g, requires_grad=True)
    sequence_ids = torch.tensor([[0] * 9, [0] * 4 + [1] * 5])
    module = types.SimpleNamespace(num_key_value_groups=H // Hkv, training=False)

    def heads_first(t):  # (B*T, h, D) -> (B, h, T, D)
        return t.view(Bq, Tq, t.shape[1], D).transpose(1, 2)
    out, _ = eager_attention_forward(module, heads_first(q), heads_first(k), heads_first(v),
                                     block_causal_mask(sequence_ids), scaling=D ** -0.5, dropout=0.0)
    out = out.reshape(Bq * Tq, H, D)  # eager returns (B, T, H, D)
    dout, (dq, dk, dv) = grads_of(out, [q, k, v], g)
    for name, t in [("q", q), ("k", k), ("v", v)]:
        w.add(f"attention.{name}", f32(t))
    w.add("attention.sequence_ids", i32(sequence_ids.reshape(-1)))
    for name, t in [("out", out), ("dout", dout), ("dq", dq), ("dk", dk), ("dv", dv)]:
        w.add(f"attention.{name}", f32(t))
    w.meta["attention"] = {"B": Bq, "T": Tq, "H": H, "Hkv": Hkv, "D": D, "scaling": D ** -0.5,
                           "kv_head_of_head": "h // (H / Hkv) (repeat_kv)",
                           "mask": "row b token i attends token j of the same row iff j <= i and "
                                   "sequence_ids equal; sequence_ids restart per row"}

    # SwiGLU: ACT2FN["silu"](gate) * up.
    gate = torch.randn(5, 176, generator=g, requires_grad=True)
    up = torch.randn(5, 176, generator=g, requires_grad=True)
    out = ACT2FN["silu"](gate) * up
    dout, (dgate, dup) = grads_of(out, [gate, up], g)
    for name, t in [("gate", gate), ("up", up), ("out", out), ("dout", dout), ("dgate", dgate), ("dup", dup)]:
        w.add(f"swiglu.{name}", f32(t))

    # Cross-entropy: mean over the targets that are not -100.
    logits = (torch.randn(6, 300, generator=g) * 2).requires_grad_()
    targets = torch.randint(0, 300, (6,), generator=g)
    targets[[1, 4]] = -100
    loss = F.cross_entropy(logits, targets, ignore_index=-100)
    (dlogits,) = torch.autograd.grad(loss, [logits])
    w.add("cross_entropy.logits", f32(logits))
    w.add("cross_entropy.targets", i32(targets))
    w.add("cross_entropy.loss", f32(loss.reshape(1)))
    w.add("cross_entropy.dlogits", f32(dlogits))
    w.meta["cross_entropy"] = {"ignore_index": -100, "reduction": "mean over targets != -100"}
    w.close()


# ---------------------------------------------------------------- model fixtures

def case_definitions():
    llama_gqa = LlamaConfig(
        hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=176,
        vocab_size=256, num_hidden_layers=2, tie_word_embeddings=False, max_position_embeddings=64,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rms_norm_eps=1e-5)
    llama3 = LlamaConfig(
        hidden_size=72, num_attention_heads=6, num_key_value_heads=2, head_dim=12, intermediate_size=200,
        vocab_size=300, num_hidden_layers=2, tie_word_embeddings=True, max_position_embeddings=64,
        rope_parameters=dict(LLAMA3_ROPE), rms_norm_eps=1e-5)
    qwen2 = Qwen2Config(
        hidden_size=96, num_attention_heads=4, num_key_value_heads=2, intermediate_size=160,
        vocab_size=320, num_hidden_layers=2, tie_word_embeddings=True, max_position_embeddings=64,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, rms_norm_eps=1e-6)
    return [
        # name, config, seed, example lengths per row, extra ignored (row, position), LoRA targets, rsLoRA
        ("llama-gqa", llama_gqa, 101, [[16], [16]], [(0, 0), (0, 1), (0, 2), (1, 7)], ALL_SEVEN, False),
        ("llama3-tied-packed", llama3, 102, [[5, 7, 4], [9, 7]], [], ["q_proj", "v_proj", "down_proj"], True),
        ("qwen2-bias", qwen2, 103, [[16], [16]], [(0, 5), (1, 0), (1, 1)], ALL_SEVEN, False),
    ]


def make_batch(vocab, lengths, ignored, g):
    """input_ids, targets (next token within the example, -100 at each example's last token and at
    `ignored`), position_ids (restart per example) and sequence_ids (example index within the row)."""
    input_ids = torch.randint(0, vocab, (B, T), generator=g)
    targets = torch.full((B, T), -100)
    position_ids = torch.zeros(B, T, dtype=torch.long)
    sequence_ids = torch.zeros(B, T, dtype=torch.long)
    segments = []
    for b, row in enumerate(lengths):
        assert sum(row) == T
        start = 0
        for index, length in enumerate(row):
            end = start + length
            position_ids[b, start:end] = torch.arange(length)
            sequence_ids[b, start:end] = index
            targets[b, start:end - 1] = input_ids[b, start + 1:end]
            segments.append((b, start, end))
            start = end
    for b, t in ignored:
        targets[b, t] = -100
    return {"input_ids": input_ids, "targets": targets, "position_ids": position_ids,
            "sequence_ids": sequence_ids, "mask": block_causal_mask(sequence_ids), "segments": segments}


def forward_logits(model, batch):
    return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                 attention_mask=batch["mask"], use_cache=False).logits


def loss_of(logits, targets):
    return F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), targets.view(-1), ignore_index=-100)


def randomize(model, g):
    """Weights randn*0.1, norms 1+0.1*randn, biases 0.1*randn (transformers' 0.02 init is too quiet)."""
    with torch.no_grad():
        for name, param in model.named_parameters():  # tied lm_head appears once, as embed_tokens
            noise = torch.randn(param.shape, generator=g)
            if "norm" in name:
                param.copy_(1 + 0.1 * noise)
            else:
                param.copy_(0.1 * noise)


def load_base(path, quantized):
    kwargs = dict(dtype=torch.float32, attn_implementation="eager")
    if quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(**BNB_CONFIG)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.train()  # see the module docstring: never run Linear4bit in eval mode here
    return model


def lora_parameters(peft_model):
    """{key as in adapter_model.safetensors: parameter}, checking that only LoRA tensors train."""
    params = {}
    for name, param in peft_model.named_parameters():
        if param.requires_grad:
            assert ".lora_A.default." in name or ".lora_B.default." in name, name
            params[name.replace(".default.", ".")] = param
    return params


def train_reference(peft_model, batch):
    """Logits, loss and LoRA grads at the initial adapter, then STEPS AdamW steps on the same batch."""
    params = lora_parameters(peft_model)
    optimizer = torch.optim.AdamW(list(params.values()), lr=LR)
    record = {"losses": []}
    for step in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        logits = forward_logits(peft_model, batch)
        loss = loss_of(logits, batch["targets"])
        record["losses"].append(loss.item())
        loss.backward()
        if step == 0:
            record["logits"] = logits.detach().clone()
            record["loss"] = loss.detach().clone()
            record["grad"] = {k: p.grad.detach().clone() for k, p in params.items()}
        optimizer.step()
        if step == 0:
            record["after1"] = {k: p.detach().clone() for k, p in params.items()}
            record["adam_m"] = {k: optimizer.state[p]["exp_avg"].clone() for k, p in params.items()}
            record["adam_v"] = {k: optimizer.state[p]["exp_avg_sq"].clone() for k, p in params.items()}
    record["adamw_defaults"] = {k: v for k, v in optimizer.defaults.items()
                                if isinstance(v, (int, float, bool, str, tuple, type(None)))}
    return record


def quantized_linears(model):
    return {name: module for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)}


def dequantized_twin(nf4_model, base_dir, adapter_dir, dequantize):
    """The fp32 model with every 4-bit weight replaced by `dequantize` of its NF4 codes, plus the adapter."""
    twin = load_base(base_dir, quantized=False)
    with torch.no_grad():
        for name, module in quantized_linears(nf4_model).items():
            name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            state = module.weight.quant_state
            w = dequantize(module.weight.data, nf4_absmax(state), state.blocksize, state.quant_type,
                           state.shape, torch.float32)
            twin.get_submodule(name).weight.copy_(w)
    twin = PeftModel.from_pretrained(twin, adapter_dir, is_trainable=True)
    twin.train()
    return twin


def check_packing(peft_model, batch, label):
    """Each packed example's logits must equal those of the example run alone (fresh positions,
    transformers' own causal mask): the 4D mask and position ids do what the fixture claims."""
    worst = 0.0
    with torch.no_grad():
        full = forward_logits(peft_model, batch)
        for b, start, end in batch["segments"]:
            alone = peft_model(input_ids=batch["input_ids"][b:b + 1, start:end],
                               position_ids=torch.arange(end - start)[None], use_cache=False).logits[0]
            worst = max(worst, (alone - full[b, start:end]).abs().max().item())
    if not worst < 1e-5:
        sys.exit(f"{label}: packed logits differ from per-example logits by {worst}")
    return worst


def add_record(w, base, record):
    w.add(f"{base}.logits", f32(record["logits"]))
    w.add(f"{base}.loss", f32(record["loss"].reshape(1)))
    w.add(f"{base}.losses", np.array(record["losses"], dtype=np.float32))
    for group in ("grad", "after1", "adam_m", "adam_v"):
        for key, t in sorted(record[group].items()):
            w.add(f"{base}.{group}.{key}", f32(t))


def model_fixture(name, config, seed, lengths, ignored, targets, use_rslora):
    out_dir = os.path.join(ROOT, "Tests", "Fixtures", f"model-{name}")
    shutil.rmtree(out_dir, ignore_errors=True)
    base_dir, nf4_dir, adapter_dir = (os.path.join(out_dir, d) for d in ("base", "base-nf4", "adapter"))
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # PEFT draws lora_A (kaiming-uniform) from the global generator

    # fp32 base: random weights, saved, and reloaded so that the reference runs what the files hold.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
    randomize(model, g)
    model.save_pretrained(base_dir)
    fp32_model = load_base(base_dir, quantized=False)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), fp32_model.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    del model

    inv_freq = fp32_model.model.rotary_emb.inv_freq.clone()
    if config.rope_parameters["rope_type"] == "llama3":
        plain = copy.deepcopy(config)
        plain.rope_parameters = {"rope_type": "default", "rope_theta": config.rope_parameters["rope_theta"]}
        plain_inv_freq = LlamaRotaryEmbedding(plain).inv_freq
        changed = int((plain_inv_freq != inv_freq).sum())
        assert changed > 0, "llama3 scaling left every frequency unchanged"
        print(f"{name}: llama3 scaling changes {changed}/{inv_freq.numel()} inverse frequencies")

    lora_config = LoraConfig(**LORA, target_modules=targets, use_rslora=use_rslora, task_type="CAUSAL_LM")
    fp32_peft = get_peft_model(fp32_model, lora_config)
    with torch.no_grad():
        for pname, param in fp32_peft.named_parameters():
            if ".lora_B." in pname:
                param.copy_(0.05 * torch.randn(param.shape, generator=g))
    fp32_peft.peft_config["default"].base_model_name_or_path = f"Tests/Fixtures/model-{name}/base"
    fp32_peft.save_pretrained(adapter_dir)
    os.remove(os.path.join(adapter_dir, "README.md"))  # PEFT's empty model card (it names an absolute path)
    config_path = os.path.join(adapter_dir, "adapter_config.json")
    with open(config_path) as f:  # PEFT keeps target_modules as a set: fix its order so reruns are identical
        adapter_config = json.load(f)
    adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
    with open(config_path, "w") as f:  # PEFT's own formatting (peft/config.py save_pretrained)
        f.write(json.dumps(adapter_config, indent=2, sort_keys=True))
    initial = {k: v.clone() for k, v in get_peft_model_state_dict(fp32_peft).items()}
    with safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), "pt") as f:
        assert sorted(f.keys()) == sorted(initial) == sorted(lora_parameters(fp32_peft))
    scalings = {m.scaling["default"] for m in fp32_peft.modules() if isinstance(m, LoraLayer)}
    expected_scaling = LORA["lora_alpha"] / (math.sqrt(LORA["r"]) if use_rslora else LORA["r"])
    assert scalings == {expected_scaling}, scalings
    fp32_peft.train()

    # nf4 base: the saved fp32 checkpoint loaded with bitsandbytes 4-bit, saved before LoRA wraps it.
    nf4_model = load_base(base_dir, quantized=True)
    assert len(quantized_linears(nf4_model)) == 7 * config.num_hidden_layers
    nf4_model.save_pretrained(nf4_dir)
    nf4_peft = PeftModel.from_pretrained(nf4_model, adapter_dir, is_trainable=True)
    nf4_peft.train()
    assert all(torch.equal(initial[k], p) for k, p in lora_parameters(nf4_peft).items())

    batch = make_batch(config.vocab_size, lengths, ignored, g)
    packing = {}
    for base, peft_model in (("fp32", fp32_peft), ("nf4", nf4_peft)):
        with torch.no_grad():
            plain = peft_model(input_ids=batch["input_ids"], use_cache=False).logits
            if all(len(row) == 1 for row in lengths):  # our 4D mask == transformers' own causal mask
                assert (plain - forward_logits(peft_model, batch)).abs().max().item() < 1e-5
        packing[base] = check_packing(peft_model, batch, f"{name}/{base}")

    # The NF4 reference equals the fp32 model over generically dequantized weights; bnb's native CPU
    # kernel would give other logits for some shapes.
    with torch.no_grad():
        nf4_logits = forward_logits(nf4_peft, batch)
        generic_twin = forward_logits(dequantized_twin(nf4_peft, base_dir, adapter_dir, generic_dequantize_4bit), batch)
        native_twin = forward_logits(dequantized_twin(nf4_peft, base_dir, adapter_dir, native_dequantize_4bit), batch)
    twin_error = (generic_twin - nf4_logits).abs().max().item()
    assert twin_error < 1e-5, twin_error
    native_logit_change = (native_twin - nf4_logits).abs().max().item()
    native_weight_error = {}
    for lname, module in quantized_linears(nf4_peft).items():
        state = module.weight.quant_state
        args = (module.weight.data, nf4_absmax(state), state.blocksize, state.quant_type, state.shape, torch.float32)
        error = (native_dequantize_4bit(*args) - generic_dequantize_4bit(*args)).abs().max().item()
        if error > 0:
            native_weight_error[str(list(state.shape))] = max(error, native_weight_error.get(str(list(state.shape)), 0))

    records = {"fp32": train_reference(fp32_peft, batch), "nf4": train_reference(nf4_peft, batch)}
    fp32_vs_nf4 = (records["fp32"]["logits"] - records["nf4"]["logits"]).abs().max().item()
    assert fp32_vs_nf4 > 1e-3, "the NF4 base should change the logits"

    # The files reload: fresh bases from base/ and base-nf4/ (the saved 4-bit checkpoint itself) plus
    # adapter/ give the recorded initial loss.
    reload = {}
    for base, path in (("fp32", base_dir), ("nf4", nf4_dir)):
        fresh = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
        fresh.train()
        fresh = PeftModel.from_pretrained(fresh, adapter_dir, is_trainable=True)
        fresh.train()
        with torch.no_grad():
            loss = loss_of(forward_logits(fresh, batch), batch["targets"]).item()
        reload[base] = abs(loss - records[base]["losses"][0])
        assert reload[base] < 1e-6, (base, loss, records[base]["losses"][0])

    w = FixtureWriter(f"model-{name}", {
        "versions": installed_versions(PINNED), "git": git_hash(), "threads": THREADS,
        "script": "tools/reference/make_model_fixtures.py", "seed": seed,
        "model_type": config.model_type, "B": B, "T": T, "vocab_size": config.vocab_size,
        "rope_parameters": config.rope_parameters,
        "examples_per_row": lengths, "extra_ignored_positions": ignored,
        "lora": {"r": LORA["r"], "lora_alpha": LORA["lora_alpha"], "use_rslora": use_rslora,
                 "scaling": expected_scaling, "target_modules": targets, "dropout": LORA["lora_dropout"],
                 "bias": LORA["bias"], "lora_B_init": "0.05 * randn (nonzero so lora_A gets a gradient)",
                 "lora_A_init": "PEFT default (kaiming-uniform a=sqrt(5))"},
        "optimizer": {"name": "torch.optim.AdamW", "lr": LR, "steps": STEPS,
                      "defaults": records["fp32"]["adamw_defaults"],
                      "losses": "loss before each step; losses[0] is the initial loss"},
        "loss": "F.cross_entropy(logits.view(-1, V).float(), targets.view(-1), ignore_index=-100), mean",
        "mask": "4D float (B,1,T,T): 0 where sequence_ids match and j <= i, else finfo(float32).min; eager",
        "init": "weights 0.1*randn, norms 1+0.1*randn, biases 0.1*randn",
        "bnb_config": {k: str(v).removeprefix("torch.") if isinstance(v, torch.dtype) else v
                       for k, v in BNB_CONFIG.items()},
        "nf4_dequant": {
            "used": "bnb generic dequantize_4bit (backends/default/ops.py), registered as the CPU kernel",
            "native_cpu_kernel_max_weight_error_by_shape": native_weight_error,
            "native_cpu_kernel_max_logit_change": native_logit_change,
            "dequantized_fp32_twin_max_logit_diff": twin_error},
        "checks": {"packed_vs_alone_max_logit_diff": packing, "reload_loss_diff": reload,
                   "fp32_vs_nf4_max_logit_diff": fp32_vs_nf4},
    })
    for key in ("input_ids", "targets", "position_ids", "sequence_ids"):
        w.add(key, i32(batch[key]))
    w.add("rope.inv_freq", f32(inv_freq))
    for base in ("fp32", "nf4"):
        add_record(w, base, records[base])
    w.close()
    return {"name": name, "records": records, "fp32_vs_nf4": fp32_vs_nf4, "native": native_logit_change,
            "native_weights": native_weight_error,
            "packing": packing, "dir": out_dir}


def main():
    torch.set_num_threads(THREADS)
    native_error = use_generic_nf4_dequantization()
    print(f"bnb's native CPU dequantize_4bit is off by up to {native_error:.3g} on a 64x176 weight: "
          "the model fixtures use bnb's generic dequantization")
    op_fixtures()
    summaries = [model_fixture(*case) for case in case_definitions()]
    for s in summaries:
        print(f"\n{s['name']}: max |fp32 - nf4 logits| = {s['fp32_vs_nf4']:.4g}, "
              f"bnb native CPU dequant would move nf4 logits by {s['native']:.4g} "
              f"(weights {s['native_weights']}), packed-vs-alone {s['packing']}")
        for base in ("fp32", "nf4"):
            print(f"  {base} losses: " + " ".join(f"{x:.6f}" for x in s["records"][base]["losses"]))
        sizes = []
        for dirpath, _, files in sorted(os.walk(s["dir"])):
            for f in sorted(files):
                path = os.path.join(dirpath, f)
                sizes.append(f"{os.path.relpath(path, ROOT)} {os.path.getsize(path)}")
        print("  " + "\n  ".join(sizes))


if __name__ == "__main__":
    main()
