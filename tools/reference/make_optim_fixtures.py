#!/usr/bin/env python3
"""Writes the golden fixture of the optimizer: torch.optim.AdamW steps, with and without
torch.nn.utils.clip_grad_norm_ before each step, on a few awkwardly shaped float32 tensors with
gradients given from numpy. The Swift paged AdamW must match these; it never runs Python.

Run (a few seconds):
    /work/refvenv/bin/python tools/reference/make_optim_fixtures.py
Pinned: torch 2.15.0 (see README.md here). Needs only torch and numpy.

Writes
  Tests/Fixtures/optim/{data.bin, manifest.json}

Tensors, in this order: lora_A.0 (4, 72), lora_B.0 (176, 4), lora_A.1 (3, 5), lora_B.1 (7, 1),
odd (5, 65). Initial values 0.1 * standard normal from np.random.default_rng(seed) (drawn in that
order, cast to float32); gradients come from their own seeded numpy generators (meta.scenarios.*).
No torch RNG is used.

Scenarios (each starts from the same initial values):
  clip    AdamW(params, lr=1e-3), every other argument at torch's defaults (betas (0.9, 0.999),
          eps 1e-8, weight_decay 0.01, amsgrad/maximize False, foreach/fused None), 12 steps; before
          each step clip_grad_norm_(params, max_norm=1.0). Per-step gradient scales make the odd
          steps' total norm well below 1 (not clipped) and the even steps' well above 1 (clipped).
          lora_B.1's gradient is exactly zero at step 1 (as a LoRA gradient is at step 1 when the
          other factor starts at zero) and lora_A.1's at step 3: a zero gradient is still a gradient
          (p.grad is a zero tensor, not None), so AdamW still decays the moments, applies the weight
          decay and, after step 1, moves the parameter by the remaining momentum.
  custom  AdamW(params, lr=3e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1), 6 steps, no
          clipping; lora_A.1's gradients are scaled by 1e-4 so that eps matters against sqrt(v_hat).

Names (steps are 1-based; everything float32):
  <scenario>.init.<tensor>         the parameter before step 1
  <scenario>.grad.<step>.<tensor>  the gradient given at that step, BEFORE clipping
  <scenario>.param.<step>.<tensor> the parameter after that step, stored only for steps 1-4 and the
                                   scenario's last step (meta.scenarios.*.param_steps; every step is
                                   still run and checked here)
  <scenario>.exp_avg.<tensor>, <scenario>.exp_avg_sq.<tensor>   optimizer.state after the last step
  clip.total_norm                  (12,) what clip_grad_norm_ returned before each step

Code paths (recorded and checked in meta.code_path):
  AdamW with foreach=None, fused=None on CPU resolves to the single-tensor for-loop
  (torch/optim/adam.py _single_tensor_adam; CPU is not a foreach device for optimizers); the script
  asserts that an explicit foreach=False run agrees bitwise. Per tensor, in float32:
      param.mul_(1 - lr * weight_decay)                      (the factor computed in double)
      exp_avg.lerp_(grad, 1 - beta1)
      exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
      step_size = lr / (1 - beta1**t); bc2_sqrt = (1 - beta2**t) ** 0.5   (Python doubles)
      denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
      param.addcdiv_(exp_avg, denom, value=-step_size)
  clip_grad_norm_ with foreach=None on CPU takes the foreach path: torch._foreach_norm per gradient,
  total_norm = torch.linalg.vector_norm(torch.stack(norms)), clip_coef = max_norm / (total_norm + 1e-6)
  (a float32 tensor), clamped to at most 1.0, and torch._foreach_mul_ of every gradient by it (by
  exactly 1.0 when not clipping, which changes nothing).
"""
import os

import numpy as np

from fixture_writer import FixtureWriter, git_hash, installed_versions
from refstack import INSTALL_PINNED, check_versions

PINNED = {"torch": "2.15.0"}
check_versions(PINNED, hint=INSTALL_PINNED)

import torch  # noqa: E402
from torch.optim.optimizer import _default_to_fused_or_foreach  # noqa: E402
from torch.utils._foreach_utils import _has_foreach_support  # noqa: E402

SEED = 20260
THREADS = 2
TENSORS = [("lora_A.0", (4, 72)), ("lora_B.0", (176, 4)), ("lora_A.1", (3, 5)), ("lora_B.1", (7, 1)),
           ("odd", (5, 65))]
INIT_SCALE = 0.1
# Total norm of a standard-normal gradient over all 1339 elements is about 37, so these scales give
# total norms of about 0.07, 2.9, 0.29, 7.3 (cycled over the 12 steps).
SCENARIOS = {
    "clip": {
        "adamw": {"lr": 1e-3},  # everything else at torch's defaults
        "max_norm": 1.0, "steps": 12, "grad_seed": SEED + 1,
        "step_scales": [0.002, 0.08, 0.008, 0.2] * 3,
        "tensor_scales": {},
        "zero_grads": {1: ["lora_B.1"], 3: ["lora_A.1"]},
    },
    "custom": {
        "adamw": {"lr": 3e-3, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1},
        "max_norm": None, "steps": 6, "grad_seed": SEED + 2,
        "step_scales": [0.02, 0.001, 0.05, 0.005, 0.0002, 0.01],
        "tensor_scales": {"lora_A.1": 1e-4},
        "zero_grads": {},
    },
}
SCRIPT = "tools/reference/make_optim_fixtures.py"


def param_steps(steps):
    """The 1-based steps whose parameters are stored: 1-4 and the last."""
    return sorted(set(range(1, min(4, steps) + 1)) | {steps})


def initial_values():
    rng = np.random.default_rng(SEED)
    return {name: (rng.standard_normal(shape) * INIT_SCALE).astype(np.float32) for name, shape in TENSORS}


def gradients(spec):
    """[step][name] -> float32 array: standard normal * step scale * tensor scale from the scenario's
    generator, drawn step by step in tensor order (a zeroed gradient is still drawn, then zeroed)."""
    rng = np.random.default_rng(spec["grad_seed"])
    out = []
    for step, scale in enumerate(spec["step_scales"], start=1):
        grads = {}
        for name, shape in TENSORS:
            g = (rng.standard_normal(shape) * scale * spec["tensor_scales"].get(name, 1.0)).astype(np.float32)
            if name in spec["zero_grads"].get(step, []):
                g = np.zeros(shape, dtype=np.float32)
            grads[name] = g
        out.append(grads)
    return out


def run(spec, init, grads, adamw_extra=None, clip_foreach=None):
    """Run the scenario in torch. adamw_extra adds AdamW arguments (foreach=False, ...); clip_foreach is
    clip_grad_norm_'s foreach (None: its default). Returns params after every step, the final state,
    the total norms, the gradients as AdamW saw them (after clipping) and optimizer.defaults."""
    params = [torch.nn.Parameter(torch.from_numpy(init[name].copy())) for name, _ in TENSORS]
    optimizer = torch.optim.AdamW(params, **spec["adamw"], **(adamw_extra or {}))
    record = {"param": [], "total_norm": [], "used_grad": []}
    for step_grads in grads:
        for p, (name, _) in zip(params, TENSORS):
            p.grad = torch.from_numpy(step_grads[name].copy())
        if spec["max_norm"] is not None:
            kwargs = {} if clip_foreach is None else {"foreach": clip_foreach}
            total = torch.nn.utils.clip_grad_norm_(params, max_norm=spec["max_norm"], **kwargs)
            assert total.dtype == torch.float32 and total.dim() == 0
            record["total_norm"].append(total.clone())
        record["used_grad"].append([p.grad.detach().clone() for p in params])
        optimizer.step()
        record["param"].append([p.detach().clone() for p in params])
    record["exp_avg"] = [optimizer.state[p]["exp_avg"].clone() for p in params]
    record["exp_avg_sq"] = [optimizer.state[p]["exp_avg_sq"].clone() for p in params]
    record["defaults"] = {k: list(v) if isinstance(v, tuple) else v for k, v in optimizer.defaults.items()
                          if isinstance(v, (int, float, bool, str, tuple, type(None)))}
    return record


def state_of(record):
    """The parameters after every step and the final moments of a record, flattened."""
    return [t for step in record["param"] for t in step] + record["exp_avg"] + record["exp_avg_sq"]


def tensors_of(record):
    """Every tensor of a record (with the total norms), flattened, for bitwise comparison."""
    return state_of(record) + record["total_norm"]


def bitwise_equal(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def max_abs_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def float64_adamw(spec, init, used_grads):
    """The AdamW formula in float64 numpy over the gradients AdamW saw (a sanity check of the fixture)."""
    hp = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, **spec["adamw"]}
    lr, (b1, b2), eps, wd = hp["lr"], hp["betas"], hp["eps"], hp["weight_decay"]
    p = [init[name].astype(np.float64) for name, _ in TENSORS]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    params = []
    for t, step_grads in enumerate(used_grads, start=1):
        for i, g in enumerate(step_grads):
            g = g.numpy().astype(np.float64)
            p[i] = p[i] * (1 - lr * wd)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            denom = np.sqrt(v[i]) / np.sqrt(1 - b2 ** t) + eps
            p[i] = p[i] - lr / (1 - b1 ** t) * m[i] / denom
        params.append([x.copy() for x in p])
    return params


def main():
    torch.set_num_threads(THREADS)
    init = initial_values()
    cpu = torch.device("cpu")
    probe = [torch.zeros(1) for _ in TENSORS]
    fused, foreach = _default_to_fused_or_foreach(probe, differentiable=False, use_fused=False)
    assert (fused, foreach) == (False, False), (fused, foreach)
    clip_foreach = _has_foreach_support(probe, cpu)
    assert clip_foreach, "clip_grad_norm_ was expected to take its foreach path on CPU"

    meta_scenarios, checks, total_norms = {}, {}, {}
    w = FixtureWriter("optim", {})
    for scenario, spec in SCENARIOS.items():
        grads = gradients(spec)
        assert len(grads) == spec["steps"]
        ref = run(spec, init, grads)

        # The default (foreach=None) must be the single-tensor loop: an explicit foreach=False run agrees.
        single = run(spec, init, grads, adamw_extra={"foreach": False})
        assert bitwise_equal(tensors_of(ref), tensors_of(single)), f"{scenario}: foreach=None != foreach=False"
        check = {"adamw_foreach_false_bitwise_equal": True}
        for label, extra in (("foreach=True", {"foreach": True}), ("fused=True", {"fused": True})):
            other = run(spec, init, grads, adamw_extra=extra)
            check[f"adamw_{label}_max_abs_diff"] = max_abs_diff(state_of(ref), state_of(other))
        if spec["max_norm"] is not None:
            loop = run(spec, init, grads, clip_foreach=False)
            check["clip_grad_norm_foreach_false_bitwise_equal"] = bitwise_equal(tensors_of(ref), tensors_of(loop))
            check["clip_grad_norm_foreach_false_max_abs_total_norm_diff"] = max_abs_diff(ref["total_norm"],
                                                                                          loop["total_norm"])
            # The total norm as float64 numpy sees it, for scale.
            exact = [np.sqrt(sum(np.sum(g[name].astype(np.float64) ** 2) for name, _ in TENSORS)) for g in grads]
            check["total_norm_vs_float64_max_rel_diff"] = float(max(
                abs(t.item() - e) / e for t, e in zip(ref["total_norm"], exact)))
        f64 = float64_adamw(spec, init, ref["used_grad"])
        check["float64_formula_max_abs_param_diff"] = float(max(
            np.abs(t.numpy().astype(np.float64) - e).max()
            for ts, es in zip(ref["param"], f64) for t, e in zip(ts, es)))
        assert check["float64_formula_max_abs_param_diff"] < 1e-6, check
        checks[scenario] = check

        hp = {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 1e-2}
        hp.update({k: list(v) if isinstance(v, tuple) else v for k, v in spec["adamw"].items()})
        assert all(ref["defaults"][k] == v for k, v in hp.items()), (ref["defaults"], hp)
        entry = {
            "optimizer": "torch.optim.AdamW", "arguments": {k: list(v) if isinstance(v, tuple) else v
                                                           for k, v in spec["adamw"].items()},
            **hp, "amsgrad": False, "maximize": False, "max_norm": spec["max_norm"], "steps": spec["steps"],
            "defaults": ref["defaults"],
            "tensor_order": [name for name, _ in TENSORS],
            "tensor_shapes": {name: list(shape) for name, shape in TENSORS},
            "grad_seed": spec["grad_seed"],
            "grads": "float32(np.random.default_rng(grad_seed).standard_normal(shape) * step_scales[step-1] "
                     "* tensor_scales.get(name, 1)), drawn step by step in tensor_order; zero_grads are drawn, "
                     "then replaced by exact zeros (still a gradient, not None)",
            "step_scales": spec["step_scales"], "tensor_scales": spec["tensor_scales"],
            "zero_grads": {str(k): v for k, v in spec["zero_grads"].items()},
            "param_steps": param_steps(spec["steps"]),
        }
        if spec["max_norm"] is not None:
            norms = np.array([t.item() for t in ref["total_norm"]], dtype=np.float32)
            total_norms[scenario] = norms
            coef = np.float32(spec["max_norm"]) / (norms + np.float32(1e-6))
            clipped = [i + 1 for i, c in enumerate(coef) if c < 1]
            unclipped = [i + 1 for i, c in enumerate(coef) if c >= 1]
            assert len(clipped) >= 2 and len(unclipped) >= 2, norms
            assert all(n > 2 * spec["max_norm"] or n < 0.5 * spec["max_norm"] for n in norms), norms
            entry["clipped_steps"], entry["unclipped_steps"] = clipped, unclipped
        meta_scenarios[scenario] = entry

        for name, _ in TENSORS:
            w.add(f"{scenario}.init.{name}", init[name])
        for step, step_grads in enumerate(grads, start=1):
            for name, _ in TENSORS:
                w.add(f"{scenario}.grad.{step}.{name}", step_grads[name])
        for step, step_params in enumerate(ref["param"], start=1):
            if step not in entry["param_steps"]:
                continue
            for (name, _), t in zip(TENSORS, step_params):
                w.add(f"{scenario}.param.{step}.{name}", t.numpy())
        for key in ("exp_avg", "exp_avg_sq"):
            for (name, _), t in zip(TENSORS, ref[key]):
                w.add(f"{scenario}.{key}.{name}", t.numpy())
        if spec["max_norm"] is not None:
            w.add(f"{scenario}.total_norm", total_norms[scenario])

    w.meta.update({
        "script": SCRIPT, "versions": installed_versions(list(PINNED) + ["numpy"]), "git": git_hash(),
        "threads": THREADS, "seed": SEED,
        "init": "float32(np.random.default_rng(seed).standard_normal(shape) * 0.1), drawn in tensor_order",
        "names": {
            "<scenario>.init.<tensor>": "parameter before step 1",
            "<scenario>.grad.<step>.<tensor>": "gradient given at that step (1-based), before clipping",
            "<scenario>.param.<step>.<tensor>": "parameter after that step, only for the steps in "
                                                "scenarios.<scenario>.param_steps",
            "<scenario>.exp_avg.<tensor>": "optimizer.state exp_avg after the last step",
            "<scenario>.exp_avg_sq.<tensor>": "optimizer.state exp_avg_sq after the last step",
            "clip.total_norm": "(steps,) what clip_grad_norm_ returned before each step",
        },
        "scenarios": meta_scenarios,
        "code_path": {
            "adamw": "torch/optim/adam.py _single_tensor_adam (decoupled_weight_decay=True): foreach=None and "
                     "fused=None resolve to the for-loop on CPU (_default_to_fused_or_foreach -> "
                     f"fused={fused}, foreach={foreach}); checked bitwise against foreach=False",
            "clip_grad_norm_": "foreach=None takes the foreach path on CPU "
                               f"(_has_foreach_support={clip_foreach}): torch._foreach_norm per gradient, "
                               "total_norm = linalg.vector_norm(stack(norms)), clip_coef = max_norm / "
                               "(total_norm + 1e-6) in float32, clamp(max=1.0), torch._foreach_mul_",
            "clipped": "clip_coef < 1, i.e. float32(total_norm + 1e-6) > max_norm",
        },
        "checks": checks,
    })
    w.close()
    for scenario, entry in meta_scenarios.items():
        if "clipped_steps" in entry:
            norms = " ".join(f"{x:.4g}" for x in total_norms[scenario])
            print(f"{scenario}: total norms {norms}; clipped steps {entry['clipped_steps']}, "
                  f"not clipped {entry['unclipped_steps']}")
        print(f"{scenario} checks: {checks[scenario]}")
    print(f"{os.path.join(w.dir, 'data.bin')}: {os.path.getsize(os.path.join(w.dir, 'data.bin'))} bytes")


if __name__ == "__main__":
    main()
