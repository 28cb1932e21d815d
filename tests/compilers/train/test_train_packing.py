"""Packed documents in ``nngraph train`` (train.data.pack) on specs/gpt_char_packed.yaml at small sizes.

Oracles: each document run alone (tokens [1, n], positions 0..n-1, one document) through the same weights; its
loss is the sum of -log p(token t+1 | tokens <= t) over its own n-1 targets. The packed batch's loss, every
document's loss read from the packed logits, and the gradients of every parameter agree with those within 1e-5.
Also: the targets counted are exactly the within-document ones (a document's last token predicts nothing);
batches are a pure function of (seed, step) and a resumed run ends with the uninterrupted run's weights; a spec
without doc_ids/positions inputs is refused at train.data.pack."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_helpers import ROOT, max_diff, run_quiet, weights

from nngraph.compilers.train.config import load_run_config
from nngraph.compilers.train.plan import task_and_data
from nngraph.compilers.train.tasks import make_task
from nngraph.compilers.torch import build_module
from nngraph.errors import SpecError

SPEC = ROOT / "specs" / "gpt_char_packed.yaml"
SMALL = ["d_model=16", "heads=2", "layers=2", "ctx=48", "train.data.seq_len=48", "train.batch_size=4"]
TOL = 1e-5


def _task(*sets: str):
    run = load_run_config(SPEC, [*SMALL, *sets])
    return make_task(run, *task_and_data(run)), run


def _documents(fields: dict[str, torch.Tensor]) -> list[tuple[int, int, int]]:
    """(row, start, end) of every real document of a packed batch (tokens whose target counts, plus the last)."""
    out = []
    for r in range(fields["tokens"].shape[0]):
        ids, mask = fields["doc_ids"][r], fields["mask"][r]
        for d in ids.unique().tolist():
            at = (ids == d).nonzero().flatten()
            if mask[at].any():
                out.append((r, int(at[0]), int(at[-1]) + 1))
    return out


def _token_nll(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """-log p(tokens[t+1] | ...) per position t of a [1, n] run (n-1 values)."""
    return torch.nn.functional.cross_entropy(logits[0, :-1].double(), tokens[0, 1:], reduction="none")


def test_a_packed_batch_gives_each_documents_own_loss_and_the_gradients_of_the_documents_alone():
    task, run = _task()
    fields = task.data.train_batch(0, 4, 0, 1, task.seed)
    batch = task.make_batch(fields, 0, 4, 0, 1)
    docs = _documents(fields)
    assert len(docs) > 4, "rows should hold several documents"
    model = build_module(run.graph, seed=3).double()
    logits = model(**batch.inputs)
    loss, _ = task.loss({"logits": logits}, batch)
    model.zero_grad()
    loss.backward()
    packed_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    nll = torch.nn.functional.cross_entropy(logits.detach().transpose(1, 2), batch.target["y"], reduction="none")
    model.zero_grad()
    total, count = 0.0, 0
    for r, lo, hi in docs:
        tokens = fields["tokens"][r:r + 1, lo:hi]
        n = hi - lo
        alone = _token_nll(model(tokens=tokens, doc_ids=torch.zeros_like(tokens), positions=torch.arange(n)[None]),
                           tokens)
        assert abs(float(nll[r, lo:hi - 1].sum() - alone.detach().sum())) <= TOL * n
        total, count = total + alone.sum(), count + n - 1
    assert count == batch.items == int(fields["mask"].sum())
    (total / count).backward()
    assert abs(float(loss.detach()) - float(total.detach() / count)) <= TOL
    for k, p in model.named_parameters():
        assert float((p.grad - packed_grads[k]).abs().max()) <= TOL, k


def test_loss_never_crosses_a_document_boundary():
    task, _ = _task()
    fields = task.data.train_batch(0, 4, 0, 1, task.seed)
    ids, mask, pos = fields["doc_ids"], fields["mask"], fields["positions"]
    same_next = torch.cat([ids[:, 1:] == ids[:, :-1], torch.zeros_like(ids[:, :1], dtype=torch.bool)], 1)
    last = torch.cat([ids[:, 1:] != ids[:, :-1], torch.ones_like(ids[:, :1], dtype=torch.bool)], 1)
    padding = ~mask & ~last  # the tail after a row's last document: several tokens with no target
    assert bool((mask <= same_next).all()), "a target counted across documents"
    assert not bool((mask & last).any()), "a document's last token predicts the next document"
    assert bool((pos[:, 1:][same_next[:, :-1]] == pos[:, :-1][same_next[:, :-1]] + 1).all())
    assert bool((pos[:, 1:][~same_next[:, :-1]] == 0).all()), "positions restart at each document"
    assert int(mask.sum()) == sum(hi - lo - 1 for _, lo, hi in _documents(fields)) and padding.any()


def test_batches_are_a_function_of_seed_and_step_and_a_resumed_run_ends_with_the_same_weights(tmp_path: Path):
    a, _ = _task()
    b, _ = _task()
    for m in (0, 5, 3 * a.steps_per_epoch(4) + 1):  # later epochs reshuffle, identically
        fa, fb = a.data.train_batch(m, 4, 0, 1, a.seed), b.data.train_batch(m, 4, 0, 1, b.seed)
        assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert not torch.equal(a.data.train_batch(0, 4, 0, 1, 0)["tokens"],
                           a.data.train_batch(a.steps_per_epoch(4), 4, 0, 1, 0)["tokens"])
    sets = [*SMALL, "train.checkpoint.every=3", "train.eval.every=100", "train.log.every=1"]
    run_quiet(SPEC, tmp_path / "whole", *sets, steps=6)
    run_quiet(SPEC, tmp_path / "cut", *sets, steps=3)
    run_quiet(SPEC, tmp_path / "cut", *sets, steps=6, resume=True)
    assert max_diff(weights(tmp_path / "whole"), weights(tmp_path / "cut")) == 0.0


def test_packing_a_spec_without_doc_ids_and_positions_is_refused_at_the_pack_key():
    run = load_run_config(ROOT / "specs" / "gpt_char.yaml", ["train.data.pack=true", "ctx=64"])
    with pytest.raises(SpecError) as info:
        make_task(run, *task_and_data(run))
    text = str(info.value)
    assert text.startswith("--set train.data.pack=true: packed rows carry doc_ids and positions but the graph "
                           "has no inputs of those names (inputs: tokens)"), text


def test_jsonl_lines_are_the_documents_and_a_bad_line_is_located(tmp_path: Path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "abcab"}\n\n{"text": "ba", "id": 2}\n{"text": "cccc"}\n')
    task, _ = _task(f"train.data.path={path}", "train.data.builtin=null", "train.data.val_fraction=0.0", "vocab=4")
    assert sorted(d.tolist() for d in task.data.docs["train"]) == [[1, 2, 3, 1, 2], [2, 1], [3, 3, 3, 3]]  # '\n' is 0
    path.write_text('{"text": "ab"}\n{"txt": "ab"}\n')
    with pytest.raises(ValueError, match=r"docs.jsonl:2: expected an object with a string field 'text'"):
        _task(f"train.data.path={path}", "train.data.builtin=null")
