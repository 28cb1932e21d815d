"""RoBERTa (specs/seeds/roberta.yaml): positions computed in the graph from the padding equal HF's
create_position_ids_from_input_ids, so the spec with HF RobertaModel's weights (small config, random
weights, right- and left-padded rows) gives RobertaModel's hidden states and pooler output (<= 1e-5), in torch
and, exported, in ONNX Runtime (<= 1e-4 of the output's scale); at full size it has RobertaModel's
124,645,632 parameters (roberta-base, counted from transformers' own model on the meta device)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nngraph import load_spec
from nngraph.compilers.torch.hf_import import import_weights

transformers = pytest.importorskip("transformers")

SPEC = Path(__file__).resolve().parents[2] / "specs" / "seeds" / "roberta.yaml"
SMALL = ["vocab=50", "d_model=16", "heads=2", "ffn=32", "layers=2", "max_len=18"]
PAD = 1
# row 0 full, row 1 right-padded, row 2 left-padded (positions still count real tokens from pad + 1)
TOKENS = torch.tensor([[0, 5, 9, 13, 7, 2, 8, 11], [0, 4, 6, 2, PAD, PAD, PAD, PAD], [PAD, PAD, 0, 3, 3, 12, 2, 40]])


def test_roberta_base_has_roberta_models_124_645_632_parameters():
    graph = load_spec(SPEC)
    with torch.device("meta"):
        hf = transformers.RobertaModel(transformers.RobertaConfig(vocab_size=50265, max_position_embeddings=514,
                                                                  type_vocab_size=1, pad_token_id=PAD))
    assert graph.total_params == sum(p.numel() for p in hf.parameters()) == 124_645_632


@pytest.fixture(scope="module")
def pair():
    cfg = transformers.RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=18, type_vocab_size=1,
                                     pad_token_id=PAD, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                     layer_norm_eps=1e-5, attn_implementation="eager")
    torch.manual_seed(0)
    hf = transformers.RobertaModel(cfg).eval()
    with torch.no_grad():  # non-trivial norms, biases and pad rows (HF initializes them to 1, 0 and 0)
        for name, p in hf.named_parameters():
            if "LayerNorm" in name or name.endswith("bias") or "embeddings" in name:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.1)
    graph = load_spec(SPEC, SMALL)
    return graph, hf, import_weights(graph, "hf-roberta", hf.state_dict())


def test_padded_batch_matches_roberta_model(pair):
    _, hf, model = pair
    with torch.no_grad():
        want = hf(input_ids=TOKENS, attention_mask=(TOKENS != PAD).long())
        got = model(TOKENS)
    assert (got["last_hidden_state"] - want.last_hidden_state).abs().max().item() <= 1e-5
    assert (got["pooler_output"] - want.pooler_output).abs().max().item() <= 1e-5


def test_onnx_export_matches_torch(pair, tmp_path):
    from nngraph.compilers.onnx.export import export_graph
    from nngraph.compilers.onnx.runner import make_session

    graph, _, model = pair
    path = tmp_path / "roberta.onnx"
    export_graph(graph, path, module=model, verify=False)
    tokens = torch.cat([TOKENS, TOKENS[:, :5]], dim=1)  # not the trace length
    with torch.no_grad():
        want = model(tokens)["last_hidden_state"].numpy()
    got = make_session(path).run(["last_hidden_state"], {"tokens": tokens.numpy()})[0]
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())
