"""Optimizers, schedules, clipping, L1, gradient accumulation, mixed precision and LoRA."""

from __future__ import annotations

import math

import pytest
import torch

from nngraph.compilers.torch import state_dict_for
from nngraph.compilers.state.lora import LoRALinear, apply_lora, merge_lora
from nngraph.compilers.train.optim import lr_lambda, make_optimizer, param_groups


def test_warmup_then_cosine_decay_to_min_lr():
    f = lr_lambda({"type": "cosine", "warmup": 10, "min_lr": 0.1}, 1.0, 110)
    assert [f(s) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.1 + 0.9 * 0.5) and f(110) == pytest.approx(0.1)
    lin = lr_lambda({"type": "linear", "warmup": 0, "min_lr": 0.0}, 2.0, 100)
    assert lin(0) == 1.0 and lin(25) == pytest.approx(0.75) and lin(100) == 0.0
    const = lr_lambda({"type": "constant", "warmup": 4, "min_lr": 0.0}, 1.0, 100)
    assert [const(s) for s in (0, 3, 50)] == [0.25, 1.0, 1.0]


def test_weight_decay_applies_to_matrices_not_biases_or_gains():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    groups = param_groups(model, 0.1)
    assert [[tuple(p.shape) for p in g["params"]] for g in groups] == [[(4, 3)], [(4,), (4,), (4,)]]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]


@pytest.mark.parametrize("kind, cls, wd", [("sgd", torch.optim.SGD, 0.0), ("adam", torch.optim.Adam, 0.0),
                                           ("adamw", torch.optim.AdamW, 0.01)])
def test_optimizer_types_and_their_default_weight_decay(kind, cls, wd):
    opt = make_optimizer(torch.nn.Linear(2, 2), {"type": kind, "lr": 0.1, "weight_decay": None, "betas": [0.8, 0.9],
                                                 "eps": 1e-8, "momentum": 0.5, "nesterov": False, "l1": 0.0})
    assert type(opt) is cls and opt.param_groups[0]["weight_decay"] == wd and opt.param_groups[0]["lr"] == 0.1


def test_the_lr_follows_the_schedule_during_training(write_spec, make_trainer):
    tr = make_trainer(write_spec(), ["train.schedule={type: linear, warmup: 4}", "train.steps=8"])
    lrs = []
    for _ in range(8):
        lrs.append(tr.task.opt.param_groups[0]["lr"])
        tr.train_step()
    assert lrs == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.0075, 0.005, 0.0025])


def test_grad_accumulation_equals_one_batch_of_the_same_examples(write_spec, make_trainer):
    spec = write_spec()
    a = make_trainer(spec, ["train.batch_size=16", "train.optimizer.type=sgd"])
    b = make_trainer(spec, ["train.batch_size=8", "train.grad_accum=2", "train.optimizer.type=sgd"])
    for _ in range(3):
        la, _ = a.train_step()
        lb, _ = b.train_step()
        assert float(la["loss"]) == pytest.approx(float(lb["loss"]), abs=1e-6)
    for k, v in state_dict_for(a.task.model).items():
        assert torch.allclose(v, state_dict_for(b.task.model)[k], atol=1e-6), k


def test_grad_clip_bounds_the_update_and_l1_adds_its_penalty(write_spec, make_trainer):
    spec = write_spec()
    tr = make_trainer(spec, ["train.optimizer={type: sgd, lr: 1.0}", "train.grad_clip=0.001"])
    before = {k: v.clone() for k, v in state_dict_for(tr.task.model).items()}
    tr.train_step()
    moved = torch.sqrt(sum(((state_dict_for(tr.task.model)[k] - v) ** 2).sum() for k, v in before.items()))
    assert float(moved) == pytest.approx(0.001, rel=1e-3)  # lr 1 x a gradient clipped to norm 0.001
    plain = make_trainer(spec)
    l1 = make_trainer(spec, ["train.optimizer.l1=0.5"])
    batch = plain.plan.task.train_batch(0, 16, 0, 1)
    outs = plain.task.forward(batch, plain.task.model)
    base, _ = plain.task.loss_of(outs, batch)
    with_l1, _ = l1.task.loss_of(l1.task.forward(batch, l1.task.model), batch)
    penalty = sum(p.abs().sum() for p in l1.task.model.parameters() if p.ndim >= 2)
    assert float((with_l1 - base).detach()) == pytest.approx(0.5 * float(penalty.detach()), rel=1e-5)


def test_bf16_autocast_on_cpu_computes_in_bfloat16_and_trains(write_spec, make_trainer):
    tr = make_trainer(write_spec(), ["train.precision=bf16"])
    batch = tr.plan.task.train_batch(0, 16, 0, 1)
    assert tr.task.forward(batch, tr.task.model)["logits"].dtype == torch.bfloat16
    losses = [float(tr.train_step()[0]["loss"]) for _ in range(12)]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in tr.task.model.parameters())  # master weights stay fp32


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def test_lora_wraps_matching_linears_starts_at_the_original_and_trains_only_adapters():
    model = _mlp()
    x = torch.randn(5, 8)
    ref = model(x)
    names = apply_lora(model, ["2"], rank=2, alpha=4.0, dropout=0.0)
    assert names == ["2"] and isinstance(model[2], LoRALinear) and isinstance(model[0], torch.nn.Linear)
    assert torch.equal(model(x), ref)  # B = 0 at the start
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"2.lora_a", "2.lora_b"}
    assert set(model.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias", "2.lora_a", "2.lora_b"}


def test_merged_lora_model_computes_the_same_function_with_the_original_keys():
    model = _mlp()
    apply_lora(model, ["*"], rank=3, alpha=6.0, dropout=0.0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_b.normal_()
    x = torch.randn(7, 8)
    adapted = model(x)
    assert merge_lora(model) == 2
    assert all(type(m) is torch.nn.Linear for m in (model[0], model[2]))
    assert torch.allclose(model(x), adapted, atol=1e-5)
    assert set(model.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_lora_training_changes_only_adapters_and_exports_merged_weights(write_spec, tmp_path):
    from nngraph.compilers.train import train
    from nngraph.compilers.torch.weights import load_weights

    spec = write_spec(train_extra="lora: {rank: 2, targets: [head]}")
    out = tmp_path / "run"
    s = train(spec, out=out, quiet=True)
    ckpt_keys = set(__import__("nngraph.compilers.state.checkpoint", fromlist=["x"]).read(
        next((out / "checkpoints").glob("step_*"))).group("model"))
    assert {"head.lora_a", "head.lora_b"} <= ckpt_keys
    w = load_weights(out / "model.safetensors")
    assert set(w.tensors) == {"fc.weight", "fc.bias", "head.weight", "head.bias"}
    from nngraph.compilers.torch import compile_spec
    init = state_dict_for(compile_spec(spec, seed=0))
    assert torch.equal(w.tensors["fc.weight"], init["fc.weight"])  # frozen
    assert not torch.equal(w.tensors["head.weight"], init["head.weight"])  # the merged update
    assert s["steps"] == 12


def test_lora_targets_that_match_nothing_point_at_the_config(write_spec):
    from nngraph.compilers.train import train
    from nngraph.errors import SpecError

    spec = write_spec(train_extra="lora: {targets: [attn]}")
    with pytest.raises(SpecError) as err:
        train(spec, quiet=True)
    (d,) = err.value.diagnostics
    assert (d.pos.line, d.pos.col) == (18, 19)
    assert d.message == "train.lora.targets ['attn'] match no linear layer"
    assert d.hint == "linear layers: fc, head"


def test_a_group_mixing_dtensors_and_plain_tensors_steps_per_parameter_with_the_foreach_update(one_rank_group):
    """Tensor parallelism alone splits some layers (DTensors) and leaves others whole: the foreach kernels refuse
    the mix, so that group steps parameter by parameter -- the same numbers as foreach on plain tensors."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, distribute_tensor

    cfg = {"type": "adamw", "lr": 0.1, "weight_decay": None, "betas": [0.8, 0.9], "eps": 1e-8, "l1": 0.0}
    plain = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    split = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    split.load_state_dict(plain.state_dict())
    mesh = init_device_mesh("cpu", (1,))
    split[0].weight = torch.nn.Parameter(distribute_tensor(split[0].weight.detach(), mesh, [Replicate()]))
    a, b = make_optimizer(plain, cfg), make_optimizer(split, cfg)
    assert [g["foreach"] for g in a.param_groups] == [True, True]
    assert [g["foreach"] for g in b.param_groups] == [False, True]  # the matrices: one DTensor, one plain
    x = torch.rand(5, 3)
    for model, opt in ((plain, a), (split, b)):
        model[1](torch.relu(_linear(x, model[0]))).square().sum().backward()
        opt.step()
    assert isinstance(split[0].weight, DTensor)
    assert torch.allclose(split[0].weight.full_tensor(), plain[0].weight, atol=1e-7)
    assert torch.allclose(split[1].weight, plain[1].weight, atol=1e-7)


def _linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    """``layer(x)`` for a layer whose weight may be a replicated DTensor (its full tensor, differentiable)."""
    from torch.distributed.tensor import DTensor

    w = layer.weight.full_tensor() if isinstance(layer.weight, DTensor) else layer.weight
    return torch.nn.functional.linear(x, w, layer.bias)


def test_the_loss_is_computed_in_at_least_float32_and_a_float64_model_keeps_float64():
    from nngraph.compilers.train.losses import cross_entropy

    target = torch.tensor([1, 0])
    for dtype, want in ((torch.bfloat16, torch.float32), (torch.float32, torch.float32), (torch.float64, torch.float64)):
        logits = torch.tensor([[0.1, 0.7, -0.2], [1.3, 0.2, 0.0]], dtype=dtype, requires_grad=True)
        loss = cross_entropy(logits, target)[0]
        assert loss.dtype == want
        ref = torch.nn.functional.cross_entropy(logits.detach().double(), target)
        assert abs(loss.item() - float(ref)) <= (1e-15 if dtype == torch.float64 else 1e-2), dtype
