"""fp16 mixed precision with a gradient scaler, on the CPU (and on CUDA where there is one): it trains, an inf
gradient skips the whole update, and the scaler's state survives a SIGKILL and --resume exactly."""

from __future__ import annotations

import math
import random
import signal
import time

import pytest
import torch

from train_helpers import finish, logged_steps, max_diff, nngraph, read_jsonl, weights

FP16 = ["train.precision=fp16"]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_fp16_on_the_cpu_computes_in_half_keeps_fp32_weights_and_learns(write_spec, make_trainer):
    tr = make_trainer(write_spec(), FP16 + ["train.steps=60"])
    assert isinstance(tr.task.scaler, torch.amp.GradScaler) and tr.task.scaler.get_scale() == 65536.0
    batch = tr.plan.task.train_batch(0, 16, 0, 1)
    assert tr.task.forward(batch, tr.task.model)["logits"].dtype == torch.float16
    losses = [float(tr.train_step()[0]["loss"]) for _ in range(60)]
    assert all(math.isfinite(x) for x in losses)
    assert _mean(losses[-10:]) < 0.5 * _mean(losses[:10]), losses
    assert all(p.dtype == torch.float32 for p in tr.task.model.parameters())  # master weights
    assert tr.evaluate("val")["accuracy"] > 0.7  # chance: 0.1


def test_an_inf_gradient_skips_the_whole_update_and_halves_the_scale(write_spec, make_trainer):
    tr = make_trainer(write_spec(), FP16 + ["train.steps=20"])
    for _ in range(3):
        tr.train_step()
    params = dict(tr.task.model.named_parameters())
    before = {k: v.detach().clone() for k, v in params.items()}
    moments = {k: v.clone() for k, v in tr.task.opt.state[params["fc.weight"]].items()}
    scale, skipped = tr.task.scaler.get_scale(), tr.task.skipped

    def poison(g: torch.Tensor) -> torch.Tensor:
        g = g.clone()
        g[0, 0] = float("inf")
        return g

    hook = params["head.weight"].register_hook(poison)
    tr.train_step()
    hook.remove()
    assert tr.task.skipped == skipped + 1 and tr.task.scaler.get_scale() == scale / 2
    for k, v in params.items():  # every weight untouched, not just the poisoned one
        assert torch.equal(v.detach(), before[k]), k
    for k, v in tr.task.opt.state[params["fc.weight"]].items():
        assert torch.equal(v, moments[k]), k  # nor the optimizer's moments and step count
    tr.train_step()
    assert tr.task.skipped == skipped + 1
    assert not torch.equal(params["head.weight"].detach(), before["head.weight"])


def test_an_fp16_run_killed_at_a_random_step_resumes_to_the_same_weights_and_scale(mlp_spec, tmp_path):
    from nngraph.compilers.state import checkpoint as ck

    spec = mlp_spec
    fp16 = ["--set", "train.precision=fp16", "--set", "train.scaler.growth_interval=4"]  # grows, overflows, backs off
    full = tmp_path / "full"
    finish(nngraph(str(spec), "--out", str(full), "-q", *fp16))
    kill_at = random.Random().randint(8, 50)
    out = tmp_path / "killed"
    proc = nngraph(str(spec), "--out", str(out), "-q", *fp16)
    while proc.poll() is None and logged_steps(out / "metrics.jsonl") < kill_at:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before step {kill_at}"
    saved = ck.latest(out / "checkpoints").state["scaler"]
    assert saved["scale"] != 65536.0 or saved["_growth_tracker"] > 0  # its state matters for the rest of the run
    text = finish(nngraph(str(spec), "--out", str(out), "--resume", *fp16))
    assert "resumed from" in text, text
    assert max_diff(weights(out), weights(full)) <= 1e-6, f"killed at step {kill_at}"
    log = lambda path: [(r["step"], r["loss"], r["loss_scale"], r["skipped"])  # noqa: E731
                        for r in read_jsonl(path / "metrics.jsonl") if r["split"] == "train"]
    assert log(out) == log(full), f"killed at step {kill_at}"
    scales = {r[2] for r in log(full)}
    assert len(scales) > 2 and log(full)[-1][3] > 0  # the scale moved both ways: grew, and backed off on skips


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (fp16 on CUDA); this machine has none")
def test_fp16_with_a_grad_scaler_on_cuda_learns(write_spec, make_trainer):
    tr = make_trainer(write_spec(), FP16 + ["train.device=cuda", "train.steps=60"])
    assert tr.plan.device.type == "cuda" and tr.task.scaler is not None
    losses = [float(tr.train_step()[0]["loss"]) for _ in range(60)]
    assert all(math.isfinite(x) for x in losses) and _mean(losses[-10:]) < 0.5 * _mean(losses[:10])
    assert all(p.dtype == torch.float32 for p in tr.task.model.parameters())
