"""The next-token filters against Hugging Face's logits processors on the same logits, the draw against its
probabilities, and the per-row stopping rules (compilers/sampling.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nngraph.compilers.sampling import (Chooser, GenerationOptions, GenerationOptionsError, apply_repetition_penalty,
                                        apply_top_k, apply_top_p, draw, processed, softmax)

lp = pytest.importorskip("transformers.generation.logits_process")


def _logits(seed: int = 0, batch: int = 4, vocab: int = 50, ties: bool = True) -> np.ndarray:
    """Random logits; ``ties``: equal values at the top and around the k-th place (top-k keeps every logit tied
    with the k-th, as HF). Top-p among tied logits depends on the sort's order of equal keys (torch.sort is not
    stable), so its oracle runs without ties."""
    x = np.random.default_rng(seed).normal(0, 2, (batch, vocab))
    if ties:
        x[0, [3, 7, 9]] = x[0].max() + 1.0
        x[1, :10] = 0.5
    return x


def _hf(processor, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
    ids = np.zeros((logits.shape[0], 1), np.int64) if ids is None else ids  # the warpers do not read the ids
    return processor(torch.from_numpy(ids), torch.from_numpy(logits.copy())).numpy()


@pytest.mark.parametrize("k", [1, 2, 5, 10, 49, 50, 80])
def test_top_k_equals_top_k_logits_warper(k):
    x = _logits(k)
    np.testing.assert_array_equal(apply_top_k(x, k), _hf(lp.TopKLogitsWarper(top_k=min(k, 50)), None, x))


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.99, 1.0])
def test_top_p_equals_top_p_logits_warper(p):
    for seed in range(3):
        x = _logits(seed, ties=False)
        got, want = apply_top_p(x, p), _hf(lp.TopPLogitsWarper(top_p=p), None, x)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        np.testing.assert_allclose(got[~np.isinf(got)], want[~np.isinf(want)], rtol=0, atol=0)


@pytest.mark.parametrize("penalty", [0.7, 1.0, 1.3, 2.0])
def test_repetition_penalty_equals_repetition_penalty_logits_processor(penalty):
    x = _logits(3)
    ids = np.random.default_rng(4).integers(0, 50, (4, 12))
    seen = np.zeros_like(x, dtype=bool)
    np.put_along_axis(seen, ids, True, axis=1)
    want = _hf(lp.RepetitionPenaltyLogitsProcessor(penalty=penalty), ids, x)
    np.testing.assert_allclose(apply_repetition_penalty(x, seen, penalty), want, rtol=1e-15, atol=0)


def test_the_whole_pipeline_equals_hf_processors_in_hf_order():
    """Repetition penalty, then temperature, top-k, top-p (transformers' generate order)."""
    x = _logits(5, ties=False)
    ids = np.random.default_rng(6).integers(0, 50, (4, 9))
    opts = GenerationOptions(do_sample=True, temperature=0.7, top_k=12, top_p=0.8, repetition_penalty=1.4)
    chooser = Chooser(opts, ids)
    got = processed(x, chooser._seen(50), opts)
    hf = lp.LogitsProcessorList([lp.RepetitionPenaltyLogitsProcessor(1.4), lp.TemperatureLogitsWarper(0.7),
                                 lp.TopKLogitsWarper(12), lp.TopPLogitsWarper(0.8)])
    want = _hf(hf, ids, x)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[~np.isinf(got)], want[~np.isinf(want)], rtol=1e-12)
    greedy = GenerationOptions(temperature=0.7, top_k=3, repetition_penalty=1.4)  # not sampling: penalty only
    np.testing.assert_array_equal(processed(x, chooser._seen(50), greedy),
                                  _hf(lp.RepetitionPenaltyLogitsProcessor(1.4), ids, x))


def test_draws_follow_the_probabilities_and_the_seed():
    probs = softmax(np.array([[np.log(p) for p in (0.5, 0.2, 0.15, 0.1, 0.05)] + [-np.inf]]))
    rng = np.random.default_rng(0)
    counts = np.bincount(np.concatenate([draw(np.repeat(probs, 1000, 0), rng) for _ in range(20)]), minlength=6)
    # 20000 draws: each frequency within 4 standard deviations of its probability; a zero stays zero
    sd = np.sqrt(probs[0] * (1 - probs[0]) / 20000)
    assert np.all(np.abs(counts / 20000 - probs[0]) <= 4 * sd + 1e-12) and counts[5] == 0
    a = draw(np.repeat(probs, 50, 0), np.random.default_rng(7))
    assert np.array_equal(a, draw(np.repeat(probs, 50, 0), np.random.default_rng(7)))
    assert not np.array_equal(a, draw(np.repeat(probs, 50, 0), np.random.default_rng(8)))


def test_greedy_breaks_ties_at_the_lowest_id_like_torch():
    logits = np.array([[0.0, 2.0, 2.0, 1.0]], np.float32)
    step = Chooser(GenerationOptions(), np.zeros((1, 1), np.int64)).step(logits)
    assert step.tokens.tolist() == [1] == torch.tensor(logits).argmax(-1).tolist()


def test_rows_stop_at_their_stop_token_and_emit_the_pad_after():
    opts = GenerationOptions(max_new_tokens=5, stop_tokens=(2, 3), pad_id=0)
    chooser = Chooser(opts, np.zeros((3, 1), np.int64))
    eye = np.eye(6)
    rows = [[1, 2, 4, 4, 4], [3, 4, 4, 4, 4], [5, 5, 5, 5, 5]]  # the argmax each row would take per step
    out = []
    while not chooser.done:
        step = chooser.step(np.stack([eye[r[chooser.steps]] for r in rows]))
        out.append(step.tokens.tolist())
    assert np.array(out).T.tolist() == [[1, 2, 0, 0, 0], [3, 0, 0, 0, 0], [5, 5, 5, 5, 5]]
    assert step.finished.tolist() == [True, True, False]
    both = Chooser(GenerationOptions(max_new_tokens=9, stop_tokens=(2,)), np.zeros((2, 1), np.int64))
    both.step(np.stack([eye[2], eye[1]]))
    s = both.step(np.stack([eye[5], eye[2]]))
    assert both.done and s.tokens.tolist() == [2, 2] and s.active.tolist() == [False, True]  # default pad: its stop


@pytest.mark.parametrize("kw, message", [
    ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
    ({"temperature": -1.0}, "temperature must be a finite number >= 0"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"repetition_penalty": 0.0}, "repetition_penalty must be a finite number > 0"),
    ({"stop_tokens": (-1,)}, "stop tokens must be token ids >= 0"),
])
def test_options_out_of_range_are_refused(kw, message):
    with pytest.raises(GenerationOptionsError, match=message):
        GenerationOptions(**kw)
