"""Tasks: VAE ELBO, diffusion ε-loss, masked LM, auxiliary MoE losses, truncated BPTT, regression, synthetic
sequence tasks, graph classification, and the errors when data and graph disagree."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from nngraph.compilers.train import train
from nngraph.compilers.train.data.builtin import corpus_text
from nngraph.compilers.train.losses import alphas_cumprod, q_sample
from nngraph.errors import SpecError

from train_helpers import ROOT, read_jsonl

QUIET = ["train.log.tensorboard=false", "train.log.plot=false"]


def test_vae_loss_is_bce_summed_per_example_plus_the_kl_output_and_it_trains(make_trainer, tmp_path):
    tr = make_trainer(ROOT / "specs/vae.yaml", QUIET + ["d_in=64", "hidden=32", "latent=4", "train.data=digits",
                                                        "train.optimizer.lr=0.003", "train.loss.beta=0.5"])
    assert tr.plan.task.name == "vae" and tr.plan.task.output == "recon"
    batch = tr.plan.task.train_batch(0, 16, 0, 1)
    outs = tr.task.forward(batch, tr.task.model)
    loss, stats = tr.task.loss_of(outs, batch)
    x = batch.target["x"]
    want = F.binary_cross_entropy(outs["recon"], x, reduction="sum") / 16 + 0.5 * outs["kl"]
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    first = tr.evaluate("val")["loss"]
    for _ in range(60):
        tr.train_step()
    assert tr.evaluate("val")["loss"] < 0.8 * first


def test_diffusion_schedules_match_their_closed_forms():
    lin = alphas_cumprod(10, "linear", 0.1, 0.5, 0.008)
    betas = torch.linspace(0.1, 0.5, 10, dtype=torch.float64)
    assert torch.allclose(lin, torch.cumprod(1 - betas, 0).float())
    cos = alphas_cumprod(1000, "cosine", 0, 0, 0.008)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert float(cos[499]) == pytest.approx(f(500) / f(0), rel=1e-4)
    x0, noise = torch.ones(2, 3), torch.full((2, 3), 2.0)
    xt = q_sample(x0, torch.tensor([0, 9]), noise, lin)
    assert torch.allclose(xt[1], lin[9].sqrt() + 2 * (1 - lin[9]).sqrt())


def test_diffusion_task_noises_images_drops_labels_to_the_null_class_and_regresses_the_noise(make_trainer):
    tr = make_trainer(ROOT / "specs/ddpm_unet.yaml", QUIET + ["base=8", "groups=4", "heads=2", "context_dim=16",
                                                             "train.task=diffusion", "train.data=digits",
                                                             "train.batch_size=8", "train.diffusion.cond_drop=0.5"])
    task = tr.plan.task
    assert task.binding.fields == {"x": "x", "t": "t", "label": "label"} and task.null_label == 10
    batch = task.train_batch(3, 8, 0, 1)
    assert batch.inputs["x"].shape == (8, 1, 8, 8) and batch.inputs["t"].dtype == torch.int64
    assert 0 < int((batch.inputs["label"] == 10).sum()) < 8  # about half the labels dropped
    halves = [task.train_batch(3, 8, r, 2) for r in (0, 1)]  # noise, t and drops are sliced like the data
    assert torch.equal(torch.cat([h.target["noise"] for h in halves]), batch.target["noise"])
    outs = tr.task.forward(batch, tr.task.model)
    loss, _ = tr.task.loss_of(outs, batch)
    assert loss.item() == pytest.approx(F.mse_loss(outs["eps"], batch.target["noise"]).item(), rel=1e-6)
    losses = [float(tr.train_step()[0]["loss"]) for _ in range(4)]
    assert all(math.isfinite(v) for v in losses)


def test_masked_lm_masks_about_mask_prob_of_the_tokens_and_predicts_only_those(make_trainer):
    tr = make_trainer(ROOT / "specs/bert_encoder.yaml",
                      QUIET + ["vocab=68", "d_model=32", "heads=2", "layers=1", "ffn=64", "max_len=64",
                               "train.task=masked_lm", "train.data={builtin: text, seq_len: 64}", "train.batch_size=64"])
    task = tr.plan.task
    assert task.binding.fill == {"token_types": "zeros", "lengths": "length"}
    batch = task.train_batch(0, 64, 0, 1)
    x, y, picked = batch.inputs["tokens"], batch.target["y"], batch.target["mask"]
    assert abs(float(picked.float().mean()) - 0.15) < 0.02
    assert abs(float((x[picked] == 67).float().mean()) - 0.8) < 0.05  # [MASK] = the data's vocab size
    assert torch.equal(x[~picked], y[~picked]) and batch.inputs["lengths"].tolist() == [64] * 64
    outs = tr.task.forward(batch, tr.task.model)
    loss, stats = tr.task.loss_of(outs, batch)
    want = F.cross_entropy(outs["logits"][picked], y[picked])
    assert loss.item() == pytest.approx(want.item(), rel=1e-5) and int(stats["count"]) == int(picked.sum())


def test_moe_auxiliary_losses_are_added_with_their_weights(make_trainer):
    tr = make_trainer(ROOT / "specs/mixtral_style.yaml",
                      QUIET + ["vocab=67", "d_model=32", "heads=2", "kv_heads=1", "layers=2", "experts=4",
                               "expert_hidden=16", "train.data={builtin: text, seq_len: 16}", "train.batch_size=4",
                               "train.loss.aux={'*.aux_loss': 0.5, 'layers.1.moe.z_loss': 2.0}"])
    assert tr.plan.aux == {"layers.0.moe.aux_loss": 0.5, "layers.1.moe.aux_loss": 0.5, "layers.1.moe.z_loss": 2.0}
    batch = tr.plan.task.train_batch(0, 4, 0, 1)
    outs = tr.task.forward(batch, tr.task.model)
    total, _ = tr.task.loss_of(outs, batch)
    lm, _ = tr.plan.task.loss(outs, batch)
    aux = 0.5 * outs["layers.0.moe.aux_loss"] + 0.5 * outs["layers.1.moe.aux_loss"] + 2.0 * outs["layers.1.moe.z_loss"]
    assert aux.item() > 0 and total.item() == pytest.approx((lm + aux).item(), rel=1e-6)


def test_truncated_bptt_carries_the_lstm_state_between_windows_and_resets_each_pass(make_trainer):
    tr = make_trainer(ROOT / "specs/char_lstm.yaml",
                      QUIET + ["vocab=67", "embed=16", "hidden=32", "dropout=0.0", "train.data=text", "train.tbptt=16",
                               "train.batch_size=4", "train.optimizer.lr=0.01"])
    assert tr.plan.state_map == {"h0": "h", "c0": "c"}
    tr.train_step()
    assert set(tr.task.carry) == {"0/h0", "0/c0"} and tr.task.carry["0/h0"].shape == (2, 4, 32)
    task = tr.plan.task
    b1 = task.train_batch(1, 4, 0, 1)
    assert not b1.reset_state and torch.equal(b1.inputs["tokens"][:, 0], task.train_batch(0, 4, 0, 1).target["y"][:, -1])
    before = {k: v.clone() for k, v in tr.task.carry.items()}
    seen = {}
    tr.task.model.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    tr.train_step()
    assert torch.equal(seen["h0"], before["0/h0"])  # the second window started from the first one's final state
    losses = [float(tr.train_step()[0]["loss"]) for _ in range(40)]
    assert sum(losses[-5:]) < sum(losses[:5])


def test_regression_on_a_csv_fits_a_linear_target(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    y = x[:, 0] - 2 * x[:, 1] + 0.5
    rows = "\n".join(",".join(f"{v:.6f}" for v in (*r.tolist(), t)) for r, t in zip(x, y.tolist()))
    (tmp_path / "lin.csv").write_text(rows + "\n")
    s = train(ROOT / "specs/mlp.yaml", out=tmp_path / "run", data=str(tmp_path / "lin.csv"), steps=150,
              overrides=QUIET + ["d_in=8", "hidden=32", "classes=1", "train.task=regression",
                                 "train.optimizer.lr=0.01"], quiet=True)
    assert s["task"] == "regression" and s["test"]["mse"] < 0.05 * float(y.var())


def test_a_tiny_gpt_learns_the_copy_task(tmp_path):
    s = train(ROOT / "specs/gpt_char.yaml", out=tmp_path / "run", data="copy", steps=150,
              overrides=QUIET + ["vocab=5", "d_model=32", "layers=1", "train.data={length: 6, symbols: 4}",
                                 "train.optimizer.lr=0.01", "train.eval.every=150"], quiet=True)
    assert s["task"] == "language_model" and s["test"]["accuracy"] >= 0.95, s["test"]


def _graphs(n: int) -> dict:
    """Cycles (class 1) vs paths (class 0) of 4-7 nodes, constant features: only the structure tells them apart."""
    out = []
    for i in range(n):
        k = 4 + i % 4
        edges = [[j, j + 1] for j in range(k - 1)] + ([[k - 1, 0]] if i % 2 else [])
        out.append({"x": [[1.0] * 7 for _ in range(k)], "edges": edges, "y": i % 2})
    return {"graphs": out}


def test_graph_classification_batches_graphs_and_learns_cycles_from_paths(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps(_graphs(120)))
    s = train(ROOT / "specs/gin_graph.yaml", out=tmp_path / "run", data=str(tmp_path / "g.json"), steps=60,
              overrides=QUIET + ["hidden=16", "layers=2", "dropout=0.0", "train.batch_size=16",
                                 "train.optimizer.lr=0.01"], quiet=True)
    assert s["task"] == "graph_classification" and s["test"]["accuracy"] >= 0.9, s["test"]


def test_data_that_does_not_fit_the_graph_input_is_an_error_with_a_fix(tmp_path):
    with pytest.raises(SpecError) as err:
        train(ROOT / "specs/mlp.yaml", out=tmp_path / "mlp", data="digits", quiet=True)
    (d,) = err.value.diagnostics
    x_line = next(i for i, line in enumerate((ROOT / "specs/mlp.yaml").read_text().splitlines(), 1)
                  if line.startswith("  x: {shape:"))
    assert (d.pos.file, d.pos.line, d.pos.col) == (str(ROOT / "specs/mlp.yaml"), x_line, 3)  # the input's line
    assert d.message == ("data field 'x' has 64 values per example ([64]) but graph input 'x' is [batch, 784] "
                         "(784 per example)")
    assert d.hint == "change the spec's input shape (e.g. with --set) or the data (given at --data digits)"
    with pytest.raises(SpecError) as err:
        train(ROOT / "specs/gpt_char.yaml", out=tmp_path / "gpt", overrides=["vocab=50"], quiet=True)
    (d,) = err.value.diagnostics
    data_line = next(i for i, line in enumerate((ROOT / "specs/gpt_char.yaml").read_text().splitlines(), 1)
                     if line.startswith("  data: {builtin: text"))
    assert (d.pos.line, d.pos.col) == (data_line, 9) and d.hint == "make the vocabulary at least 67 (e.g. --set vocab=67)"
    assert d.message == "the data has a vocabulary of 67 tokens but embedding 'wte' has num=50"


def test_a_graph_input_without_data_is_reported_at_its_line_not_at_1_1(tmp_path):
    spec = tmp_path / "two.yaml"
    spec.write_text("nngraph: 1\nname: two\ninputs:\n  x: {shape: [batch, 64], dtype: float32}\n"
                    "  extra: {shape: [batch, 64], dtype: float32}\ngraph:\n"
                    "  - {name: s, op: add, in: [x, extra]}\n  - {name: head, op: linear, in: s, out: 10}\n"
                    "outputs: {logits: head}\n")
    with pytest.raises(SpecError) as err:
        train(spec, out=tmp_path / "run", data="digits", quiet=True)
    (d,) = err.value.diagnostics
    assert (d.pos.file, d.pos.line, d.pos.col) == (str(spec), 5, 3)
    assert d.message == "graph input 'extra' ['batch', '64'] (float32) gets no data for task 'classification'"


def test_the_task_is_guessed_from_data_and_outputs(tmp_path):
    from nngraph.compilers.train.config import load_run_config
    from nngraph.compilers.train.tasks._guess import guess_task

    assert guess_task(load_run_config(ROOT / "specs/vae.yaml")) == "vae"
    assert guess_task(load_run_config(ROOT / "specs/gcn.yaml")) == "node_classification"
    assert guess_task(load_run_config(ROOT / "specs/gin_graph.yaml")) == "graph_classification"
    assert guess_task(load_run_config(ROOT / "specs/char_lstm.yaml")) == "language_model"
    assert guess_task(load_run_config(ROOT / "specs/mlp.yaml", data="digits")) == "classification"


def test_a_run_writes_metrics_tensorboard_and_the_loss_curve(tmp_path, write_spec):
    spec = write_spec()
    out = tmp_path / "run"
    train(spec, out=out, overrides=["train.log={every: 2, tensorboard: true, plot: true}"], quiet=True)
    records = read_jsonl(out / "metrics.jsonl")
    train_recs = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train_recs] == [2, 4, 6, 8, 10, 12]
    assert all({"loss", "lr", "throughput"} <= set(r) for r in train_recs)
    assert {r["split"] for r in records} == {"train", "val", "test"}
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 12 and "accuracy" in summary["test"]


def test_a_language_model_trains_on_a_text_file_with_a_bpe_tokenizer(tmp_path):
    text = tmp_path / "tales.txt"
    text.write_text(corpus_text()[:60_000])
    out = tmp_path / "run"
    s = train(ROOT / "specs/gpt_char.yaml", out=out, data=str(text), steps=20,
              overrides=QUIET + ["vocab=320", "train.data={tokenizer: bpe, vocab_size: 320, seq_len: 32}",
                                 "train.eval.batches=2"], quiet=True)
    assert s["task"] == "language_model" and s["val"]["loss"] < math.log(320)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))  # the run's vocabulary, reloadable
    assert tok.get_vocab_size() == 320 and tok.decode(tok.encode("The old sailor").ids) == "The old sailor"
