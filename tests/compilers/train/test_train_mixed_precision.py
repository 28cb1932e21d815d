"""FSDP's mixed-precision policy (train.precision: bf16 under FSDP): the blocks compute with bf16 gathered parameters
while the shards, their gradients and the optimizer stay fp32; 2 gloo processes in bf16 follow the fp32 run within
bf16's precision; bf16 where the device has none is a located error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nngraph.errors import SpecError

from train_helpers import BLOCKS_FSDP_ARGS, ENV, finish, nngraph, run_quiet, train_curve


@pytest.mark.parametrize("precision, gathered", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_fsdp_policy_gathers_bf16_and_keeps_fp32_shards_and_gradients(one_rank_group, blocks_spec_path,
                                                                          precision, gathered):
    from nngraph.compilers.torch import compile_spec
    from nngraph.compilers.train.amp import fsdp_policy
    from nngraph.compilers.train.fsdp import shard

    model = compile_spec(blocks_spec_path)
    assert shard(model, mp_policy=fsdp_policy(precision)) == ["h.0", "h.1", "h.2", "h.3"]
    seen = []
    model.h[2].up.register_forward_pre_hook(lambda m, args: seen.append((m.weight.dtype, args[0].dtype)))
    model(x=torch.rand(4, 64)).float().square().mean().backward()
    assert seen == [(gathered, gathered)]  # what the block computes with (its input cast at the root too)
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32, name  # the shards and reduced grads


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(
        torch.cuda.device_count() < 2 or not torch.cuda.is_bf16_supported(),
        reason=f"needs 2 CUDA GPUs with bf16 (FSDP over NCCL); this machine has {torch.cuda.device_count()}")),
])
def test_two_fsdp_processes_in_bf16_follow_the_fp32_run_within_bf16_precision(blocks_fsdp_run, device):
    """bf16 keeps 8 significant bits: each gathered weight and each autocast activation is rounded by up to
    2^-9 = 0.2% (relative), with fp32 accumulation in the matmuls, the loss and the reduce-scatter. The loss (~2.3, a
    mean over 16 examples, whose independent roundings mostly cancel) so moves by about one such rounding per step;
    AdamW's lr-sized updates do not grow a gradient's rounding. Bound: 0.5% (2.5 roundings) per step; measured
    0.07% on gloo. The 4 steps lower the loss by 10%, so a run that stalled would fail."""
    spec, fp32, _ = blocks_fsdp_run
    out = fp32.parent / f"bf16_{device}"
    finish(nngraph(str(spec), "--out", str(out), "--nproc-per-node", "2", *BLOCKS_FSDP_ARGS, "-q",
                   "--set", "train.precision=bf16", "--set", f"train.device={device}", env=ENV))
    a, b = train_curve(fp32), train_curve(out)
    assert len(a) == len(b) == 4
    assert a != b  # bf16 did round
    assert max(abs(x - y) / x for x, y in zip(a, b)) <= 0.005, (a, b)


def test_bf16_on_a_gpu_without_bf16_is_a_located_error(tmp_path: Path, blocks_spec_path, monkeypatch):
    from nngraph.compilers.train import plan

    monkeypatch.setattr(plan, "resolve_device", lambda setting, d: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(SpecError) as info:
        run_quiet(blocks_spec_path, tmp_path / "bf16", "train.precision=bf16", steps=1)
    (diag,) = info.value.diagnostics
    assert diag.message == ("train.precision: bf16 is not supported on Tesla T4 (compute capability 7.5; bf16 needs "
                            "8.0 or later)")
    assert diag.hint == "use precision fp16 (with its gradient scaler) or fp32 on this device"
    assert diag.pos.file == "--set train.precision=bf16"  # where the precision was asked for
