"""Parameter counts of the specs made for `nngraph train` (cnn_digits, gpt_char), against torch.nn builds."""

from pathlib import Path

import torch
from torch import nn

from _zoo import count

from nngraph import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_cnn_digits_has_the_parameters_of_the_same_torch_nn_stack():
    ref = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))
    assert ref(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert load_spec(SPECS / "cnn_digits.yaml").total_params == count(ref) == 38_282


def test_gpt_char_is_embeddings_plus_two_pre_ln_layers_with_a_tied_head():
    d, vocab, ctx, layers = 64, 67, 64, 2
    layer = (2 * 2 * d) + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    want = vocab * d + ctx * d + layers * layer + 2 * d  # the LM head reuses wte: no parameters of its own
    ref = nn.ModuleList([nn.Embedding(vocab, d), nn.Embedding(ctx, d), nn.LayerNorm(d)] +
                        [nn.TransformerEncoderLayer(d, 4, 4 * d, norm_first=True) for _ in range(layers)])
    assert load_spec(SPECS / "gpt_char.yaml").total_params == count(ref) == want == 108_480
