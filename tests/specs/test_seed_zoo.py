"""The seed zoo (specs/seeds/, and the top-level specs/*.yaml with a ``# System:`` header): every spec validates, compiles at full size with the torch back end
(meta device) to exactly the front end's parameter count, and runs forward+backward at the small
sizes of its ``# small-sizes:`` header line.

Parameter counts are pinned to independent oracles: published totals (torchvision AlexNet
61,100,840, VGG-16 138,357,544, GoogLeNet 6,624,904, ResNet-50 25,557,032, EfficientNet-B0
5,288,548; HF BertModel bert-base-uncased 109,482,240; timm ViT-B/16 86,567,656 for the DyT ViT)
and, where no total is published, the same model built here from torch.nn layers on the meta device.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from nngraph import load_spec
from nngraph.limits import DEFAULT_LIMITS
from nngraph.spec import check_spec

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "specs" / "seeds"
SPECS = sorted(SEEDS.glob("*.yaml"))
SEED_TEXTS = Path("/work/shared/seeds")

_spec = importlib.util.spec_from_file_location("seed_zoo_table", ROOT / "scripts" / "seed_zoo_table.py")
table = sys.modules.setdefault("seed_zoo_table", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(table)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models on a loaded 2-core machine: one torch thread (batched QR is ~100x slower with 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: the seed specs describe published models at their full sizes (GShard: 13.1e9 parameters, 52.5 GB as float32):
#: these tests check them on the meta device and never allocate them, so this machine's memory is no limit here
DESCRIBE_ONLY = replace(DEFAULT_LIMITS, max_memory=0)


@functools.lru_cache(maxsize=None)
def _checked(name: str, overrides: tuple[str, ...]):
    graph, diag = check_spec(SEEDS / f"{name}.yaml", list(overrides), DESCRIBE_ONLY)
    return graph, [f"{d.pos}: {d.severity}: {d.message}" for d in diag]


def load(name: str, overrides: list[str] | None = None):
    """The validated graph (cached: tests only read it); fails on any error or warning."""
    graph, problems = _checked(name, tuple(overrides or ()))
    assert not problems, problems
    return graph


def count(*parts: nn.Module | nn.Parameter) -> int:
    return sum(p.numel() if isinstance(p, nn.Parameter) else sum(q.numel() for q in p.parameters()) for p in parts)


def meta(build):
    with torch.device("meta"):
        return build()


# ----- every spec ----------------------------------------------------------------------
def test_the_seed_zoo_has_every_system_of_the_brief():
    assert {p.stem for p in SPECS} >= {
        "alexnet", "vgg16", "googlenet", "resnet50", "efficientnet_b0", "elman_rnn_lm", "seq2seq_luong",
        "seq2seq_bahdanau", "transformer_base", "bert_base", "bigbird", "sparse_transformer", "performer",
        "linformer", "linear_transformer", "dyt_vit", "graphsage", "gin_node",
        "kalman_filter", "deep_kalman_filter", "reformer", "gshard", "glam"}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_seed_spec_is_valid_without_warnings_and_its_header_says_what_it_is(path):
    graph = load(path.stem)
    assert graph.name == path.stem and graph.nodes and graph.outputs
    head = table.read_header(path)
    assert head.first_line == table.SCHEMA_LINE
    assert head.system and head.seed.startswith("seed 00") and head.small
    text = path.read_text()
    assert re.search(r"^# Published count: ", text, re.M), "header must state the published count (or none)"
    if head.published_exact is not None:
        assert head.published_exact == graph.total_params


@pytest.mark.skipif(not SEED_TEXTS.is_dir(), reason="seed texts not available")
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_cited_seed_section_exists_in_that_seed_text(path):
    texts = {"000": (SEED_TEXTS / "000_c3bd5158f63163e8.txt").read_text(),
             "002": (SEED_TEXTS / "002_169c3ec9a15ce45c.txt").read_text()}
    header = "\n".join(line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#"))
    seed_part = header[header.index("Seed:"):]
    seed_part = seed_part[:re.search(r"\n[A-Z][A-Za-z -]+:", seed_part[5:]).start() + 5]
    cited = re.findall(r'(\d{3})( "[^"]+"(?: (?:/|and) "[^"]+")*)', seed_part.replace("\n", " "))
    assert cited
    for seed, titles in cited:
        for title in re.findall(r'"([^"]+)"', titles):
            assert title in texts[seed], f"seed {seed} has no section {title!r}"


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_full_size_model_compiles_on_meta_with_the_front_end_parameter_count(path):
    graph = load(path.stem)
    assert table.torch_param_count_on_meta(graph) == graph.total_params


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_small_model_runs_forward_and_backward(path):
    n, problems = table.forward_backward(path, table.read_header(path).small)
    assert not problems, problems
    assert 0 < n < 6_000_000


def test_the_generated_table_lists_exactly_the_zoo_specs():
    doc = (ROOT / "docs" / "seed-zoo.md").read_text()
    listed = set(re.findall(r"\]\(\.\./(specs/(?:seeds/)?\w+\.yaml)\)", doc))
    zoo = table.seed_specs()
    assert listed == {p.relative_to(ROOT).as_posix() for p in zoo}, (
        "run scripts/seed_zoo_table.py to regenerate docs/seed-zoo.md")
    assert f"{len(zoo)} of {len(zoo)} specs pass every check" in doc


# ----- the top-level specs of the zoo (specs/*.yaml with a '# System:' header) --------------
TOP = table.top_level_specs()


def test_the_zoo_covers_the_top_level_specs_of_the_issue_systems_and_all_seed_specs():
    assert {p.stem for p in TOP} >= {
        "gpt2_small", "t5_encoder_decoder", "vit", "longformer", "mixtral_style", "switch_style", "char_lstm",
        "gru_classifier", "lenet", "resnet18", "vae", "ddpm_unet", "gcn", "gat", "gin_graph", "mamba_style"}
    assert all(p.parent == ROOT / "specs" for p in TOP)
    assert table.seed_specs() == TOP + SPECS


def test_only_specs_whose_header_names_a_system_are_top_level_zoo_specs(tmp_path, monkeypatch):
    head = "# yaml-language-server: $schema=../docs/nngraph.schema.json\n"
    (tmp_path / "a.yaml").write_text(head + "# System: A\nnngraph: 1\n")
    (tmp_path / "b.yaml").write_text(head + "nngraph: 1\n# System: after the header\n")
    monkeypatch.setattr(table, "SPECS_DIR", tmp_path)
    assert table.top_level_specs() == [tmp_path / "a.yaml"]


@pytest.mark.parametrize("path", TOP, ids=[p.stem for p in TOP])
def test_top_level_zoo_spec_header_is_complete_and_its_published_count_holds(path):
    graph, diag = check_spec(path, [])
    assert graph is not None and not diag, [d.message for d in diag]
    head = table.read_header(path)
    assert head.first_line == table.TOP_SCHEMA_LINE
    assert head.system and head.seed.startswith("seed 00") and head.small
    assert re.search(r"^# Published count: ", path.read_text(), re.M)
    if head.published_exact is not None:
        assert head.published_exact == graph.total_params


@pytest.mark.parametrize("path", TOP, ids=[p.stem for p in TOP])
def test_top_level_zoo_spec_trained_by_names_existing_tests_that_train_that_spec(path):
    for node in table.read_header(path).trained_by:
        file, _, name = node.partition("::")
        source = (ROOT / file).read_text()
        body = re.search(rf"^def {name}\(.*?(?=^def |\Z)", source, re.M | re.S)
        assert body, f"{node} does not exist"
        assert f'"specs/{path.name}"' in body.group(0), f"{node} does not train {path.name}"


@pytest.mark.skipif(not SEED_TEXTS.is_dir(), reason="seed texts not available")
@pytest.mark.parametrize("path", TOP, ids=[p.stem for p in TOP])
def test_top_level_zoo_spec_cites_seed_sections_that_exist(path):
    test_every_cited_seed_section_exists_in_that_seed_text(path)


@pytest.mark.parametrize("path", TOP, ids=[p.stem for p in TOP])
def test_top_level_zoo_spec_compiles_on_meta_and_runs_forward_backward_small(path):
    graph = check_spec(path, [])[0]
    assert table.torch_param_count_on_meta(graph) == graph.total_params
    n, problems = table.forward_backward(path, table.read_header(path).small)
    assert not problems, problems
    assert 0 < n < 12_000_000


def test_header_parser_reads_system_seed_published_and_small_sizes(tmp_path):
    spec = tmp_path / "x.yaml"
    spec.write_text('# yaml-language-server: $schema=../../docs/nngraph.schema.json\n# System: X (Y, 2020)\n'
                    '# Seed: 002 "Sparse Transformers" (a\n# wrapped note); 000 "Transformers".\n'
                    '# Published count: 1,234 (somewhere); this spec: 1,234.\n# small-sizes: a=1 b=2\nnngraph: 1\n'
                    '# Published count: 99 (after the header: ignored)\n')
    head = table.read_header(spec)
    assert (head.system, head.seed, head.published, head.published_exact, head.small) == (
        "X (Y, 2020)", 'seed 002 "Sparse Transformers"', "1,234", 1234, ["a=1", "b=2"])


# ----- CNNs: published totals ----------------------------------------------------------
def test_alexnet_is_torchvision_alexnet_with_61_100_840_parameters():
    graph = load("alexnet")
    model = meta(lambda: nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.Conv2d(64, 192, 5, padding=2), nn.Conv2d(192, 384, 3, padding=1),
        nn.Conv2d(384, 256, 3, padding=1), nn.Conv2d(256, 256, 3, padding=1),
        nn.Linear(256 * 6 * 6, 4096), nn.Linear(4096, 4096), nn.Linear(4096, 1000)))
    assert graph.total_params == count(model) == 61_100_840
    assert graph.nodes["pool5"].out.shape == ("batch", 256, 6, 6)  # 224 -> 55 -> 27 -> 13 -> 6
    assert graph.nodes["flat"].out.shape == ("batch", 9216)


def test_vgg16_is_configuration_d_with_138_357_544_parameters():
    graph = load("vgg16")
    cfg = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = [nn.Conv2d(c_in, c_out, 3, padding=1) for c_in, c_out in zip([3] + cfg[:-1], cfg)]
    model = meta(lambda: nn.ModuleList(convs + [nn.Linear(25088, 4096), nn.Linear(4096, 4096), nn.Linear(4096, 1000)]))
    assert graph.total_params == count(model) == 138_357_544
    assert sum(n.op == "conv2d" for n in graph.nodes.values()) == 13
    assert graph.nodes["stage5.pool"].out.shape == ("batch", 512, 7, 7)


def test_googlenet_is_torchvision_inference_layout_with_6_624_904_parameters():
    graph = load("googlenet")
    assert graph.total_params == 6_624_904
    assert graph.nodes["inception3a.concat"].out.shape == ("batch", 256, 28, 28)  # 64 + 128 + 32 + 32
    assert graph.nodes["inception5b.concat"].out.shape == ("batch", 1024, 7, 7)
    assert graph.nodes["inception3a.branch3.conv"].params["kernel"] == 3  # torchvision's "5x5" branch
    # the paper's 5x5 kernels: each of the 9 modules' third branch grows by (25 - 9)·ch5r·ch5
    ch5 = {"3a": (16, 32), "3b": (32, 96), "4a": (16, 48), "4b": (24, 64), "4c": (24, 64), "4d": (32, 64),
           "4e": (32, 128), "5a": (32, 128), "5b": (48, 128)}
    assert load("googlenet", ["k5=5"]).total_params == 6_624_904 + 16 * sum(a * b for a, b in ch5.values())


def test_resnet50_has_25_557_032_parameters_and_bottleneck_stages():
    graph = load("resnet50")
    assert graph.total_params == 25_557_032
    blocks = [name for name in graph.nodes if name.endswith(".conv3")]
    assert len(blocks) == 3 + 4 + 6 + 3
    assert graph.nodes["layer1.b0.down_conv"].out.shape == ("batch", 256, 56, 56)  # projection, stride 1
    assert graph.nodes["layer4.b0.conv2"].params["stride"] == 2  # v1.5: stride on the 3x3
    assert graph.nodes["layer4.rest.1.relu3"].out.shape == ("batch", 2048, 7, 7)


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision.models._utils._make_divisible, the oracle for width scaling."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def test_efficientnet_b0_has_5_288_548_parameters_with_depthwise_convs_and_squeeze_excitation():
    graph = load("efficientnet_b0")
    assert graph.total_params == 5_288_548
    dw = graph.nodes["stage6.b0.body.depthwise.conv"]
    assert dw.params["groups"] == dw.params["out"] == 112 * 6 and dw.params["kernel"] == 5
    se = graph.nodes["stage6.b0.body.se.fc1"]
    assert se.params["out"] == 112 // 4 and se.out.shape == ("batch", 28, 1, 1)
    assert graph.nodes["stage7.body.project_bn"].out.shape == ("batch", 320, 7, 7)
    assert graph.nodes["head_conv.act"].out.shape == ("batch", 1280, 7, 7)


@pytest.mark.parametrize("width_mult", [0.25, 0.5, 0.75, 1.1, 1.4])
def test_efficientnet_width_scaling_rounds_like_torchvision(width_mult):
    graph = load("efficientnet_b0", [f"width_mult={width_mult}"])
    want = [make_divisible(c * width_mult) for c in (32, 16, 24, 40, 80, 112, 192, 320)]
    got = [graph.vars[f"c{i}"] for i in range(8)]
    assert got == want
    assert graph.nodes["head_conv.act"].out.shape[1] == 4 * want[-1]


def test_efficientnet_depth_mult_scales_stage_block_counts():
    graph = load("efficientnet_b0", ["depth_mult=1.2"])  # ceil(2·1.2) = 3, ceil(3·1.2) = 4, ceil(4·1.2) = 5
    for stage, n in ((2, 3), (3, 3), (4, 4), (5, 4), (6, 5)):
        assert f"stage{stage}.rest.{n - 2}.residual" in graph.nodes
        assert f"stage{stage}.rest.{n - 1}.residual" not in graph.nodes


# ----- recurrent ------------------------------------------------------------------------
def test_elman_rnn_lm_matches_torch_embedding_rnn_linear():
    graph = load("elman_rnn_lm")
    model = meta(lambda: nn.ModuleList([nn.Embedding(10000, 200), nn.RNN(200, 200, batch_first=True),
                                        nn.Linear(200, 10000)]))
    assert graph.total_params == count(model) == 4_090_400
    assert graph.nodes["rnn"].params["nonlinearity"] == "tanh"
    assert graph.nodes["readout"].out.shape == ("batch", "seq", 10000)


def test_seq2seq_luong_matches_torch_and_attends_over_the_source():
    graph = load("seq2seq_luong")
    model = meta(lambda: nn.ModuleList([
        nn.Embedding(50000, 1000), nn.LSTM(1000, 1000, 4), nn.Embedding(50000, 1000), nn.LSTM(1000, 1000, 4),
        nn.Linear(2000, 1000, bias=False), nn.Linear(1000, 50000)]))
    assert graph.total_params == count(model) == 216_114_000
    assert graph.nodes["align"].out.shape == ("batch", "tgt", "src")
    dec = graph.nodes["decoder"]
    assert (dec.inputs["h0"].node, dec.inputs["h0"].output, dec.inputs["c0"].output) == ("encoder", "h", "c")


def test_seq2seq_bahdanau_matches_torch_and_scores_every_target_source_pair():
    graph = load("seq2seq_bahdanau")
    model = meta(lambda: nn.ModuleList([
        nn.Embedding(30000, 620), nn.GRU(620, 1000, bidirectional=True), nn.Linear(1000, 1000),  # W_s
        nn.Embedding(30000, 620), nn.GRU(620, 1000),
        nn.Linear(1000, 1000, bias=False), nn.Linear(2000, 1000), nn.Linear(1000, 1, bias=False),  # W_a, U_a, v_a
        nn.Linear(1000, 1000), nn.Linear(620, 1000, bias=False), nn.Linear(2000, 1000, bias=False),  # U_o V_o C_o
        nn.Linear(500, 30000)]))
    assert graph.total_params == count(model) == 74_452_000
    energy = graph.nodes["energy"].out.shape  # [batch, tgt, src, align]: one score input per (t, j)
    assert len(energy) == 4 and energy[0] == "batch" and energy[3] == 1000
    assert graph.nodes["t"].out.shape[-1] == 500


@pytest.mark.parametrize("name", ["seq2seq_luong", "seq2seq_bahdanau"])
def test_attention_weights_are_a_distribution_over_source_positions(name):
    from nngraph.compilers.torch import build_module

    graph = load(name, table.read_header(SEEDS / f"{name}.yaml").small)
    model = build_module(graph, seed=0).eval()
    sizes = table.SMALL_DIMS
    with torch.no_grad():
        out = model(**table.concrete_inputs(graph, sizes))
    weights = out["attention"]
    assert weights.shape == (sizes["batch"], sizes["tgt"], sizes["src"])
    assert torch.allclose(weights.sum(-1), torch.ones(sizes["batch"], sizes["tgt"]), atol=1e-6)
    assert (weights > 0).all()


# ----- transformers ---------------------------------------------------------------------
def encoder_layers(n: int, d: int, heads: int, ffn: int) -> list[nn.Module]:
    """n layers with exactly a Transformer layer's parameters (MHA with biases, two linears, two norms)."""
    return [nn.TransformerEncoderLayer(d, heads, ffn) for _ in range(n)]


def test_transformer_base_matches_torch_and_the_paper_with_one_shared_embedding_table():
    graph = load("transformer_base")
    model = meta(lambda: nn.ModuleList([  # ONE 37k table: source, target and pre-softmax share it (§3.4)
        nn.Embedding(37000, 512), *encoder_layers(6, 512, 8, 2048),
        *[nn.TransformerDecoderLayer(512, 8, 2048) for _ in range(6)]]))
    assert graph.total_params == count(model) == 63_082_496  # the paper's ~65M
    assert graph.nodes["tgt_lookup"].params["tie"] == "src_lookup" and graph.nodes["tgt_lookup"].n_params == 0
    assert graph.nodes["generator"].params["tie"] == "src_lookup" and graph.nodes["generator"].n_params == 0
    assert graph.nodes["src_embed.positions"].params["type"] == "sinusoidal"
    assert graph.nodes["decoder.5.cross_attn"].inputs["context"].node == "encoder.5.norm_2"


def test_bert_base_is_bert_model_with_109_482_240_parameters():
    graph = load("bert_base")
    model = meta(lambda: nn.ModuleList([
        nn.Embedding(30522, 768), nn.Embedding(512, 768), nn.Embedding(2, 768), nn.LayerNorm(768),
        *encoder_layers(12, 768, 12, 3072), nn.Linear(768, 768)]))
    assert graph.total_params == count(model) == 109_482_240
    assert graph.nodes["pooler"].out.shape == ("batch", 768)
    # the MLM spec differs by the head (transform + decoder bias) minus the pooler
    mlm = load_spec(ROOT / "specs" / "bert_encoder.yaml")
    assert mlm.total_params - graph.total_params == (768 * 768 + 768 + 2 * 768 + 30522) - (768 * 768 + 768)


def test_bigbird_matches_torch_and_composes_window_global_and_random_masks():
    graph = load("bigbird")
    model = meta(lambda: nn.ModuleList([
        nn.Embedding(50358, 768), nn.Embedding(4096, 768), nn.Embedding(2, 768), nn.LayerNorm(768),
        *encoder_layers(12, 768, 12, 3072), nn.Linear(768, 768)]))
    assert graph.total_params == count(model) == 127_468_800
    mask = graph.nodes["encoder.11.attention"].params["mask"]
    assert mask["all"][0] == "key_padding"
    kinds = {m["type"]: m for m in mask["all"][1]["any"]}
    assert kinds["sliding_window"]["window"] == 192 and kinds["sliding_window"]["causal"] is False
    assert kinds["global_tokens"]["positions"] == [0] and kinds["random"]["per_row"] == 192


def test_sparse_transformer_alternates_local_and_strided_layers():
    graph = load("sparse_transformer")
    model = meta(lambda: nn.ModuleList([nn.Embedding(256, 512), nn.Embedding(12288, 512),
                                        *encoder_layers(30, 512, 8, 2048), nn.LayerNorm(512), nn.Linear(512, 256)]))
    assert graph.total_params == count(model) == 101_126_400
    parts = [graph.nodes[f"layers.{i}.attn"].params["mask"]["part"] for i in range(30)]
    assert parts == ["local", "strided"] * 15
    assert {graph.nodes[f"layers.{i}.attn"].params["mask"]["stride"] for i in range(30)} == {128}


def test_performer_matches_torch_and_uses_256_random_features_per_head():
    graph = load("performer")
    model = meta(lambda: nn.ModuleList([nn.Embedding(30522, 512), nn.Embedding(4096, 512),
                                        *encoder_layers(6, 512, 8, 2048), nn.LayerNorm(512)]))
    head_bias = meta(lambda: nn.Parameter(torch.empty(30522)))
    assert graph.total_params == count(model, head_bias) == 36_670_266
    attn = [graph.nodes[f"layers.{i}.attn"] for i in range(6)]
    assert {a.params["num_features"] for a in attn} == {256}
    assert [a.params["seed"] for a in attn] == list(range(6))  # a different projection per layer


def test_linformer_matches_torch_plus_one_e_and_f_per_layer():
    graph = load("linformer")
    model = meta(lambda: nn.ModuleList([
        nn.Embedding(50265, 768), nn.Embedding(512, 768), nn.LayerNorm(768), *encoder_layers(12, 768, 12, 3072),
        nn.Linear(768, 768), nn.LayerNorm(768)]))
    projections = 12 * 2 * 512 * 256
    assert graph.total_params == count(model) + projections + 50265 == 127_840_857
    assert graph.nodes["layers.0.attn"].n_params == 4 * (768 * 768 + 768) + 2 * 512 * 256
    assert load("linformer", ["share_kv=true"]).total_params == graph.total_params - 12 * 512 * 256


def test_linear_transformer_matches_torch_and_is_causal():
    graph = load("linear_transformer")
    model = meta(lambda: nn.ModuleList([nn.Embedding(256, 256), nn.Embedding(784, 256),
                                        *encoder_layers(8, 256, 8, 1024), nn.LayerNorm(256), nn.Linear(256, 256)]))
    assert graph.total_params == count(model) == 6_650_624
    assert all(graph.nodes[f"layers.{i}.attn"].params["causal"] for i in range(8))


def test_dyt_vit_is_vit_b16_plus_one_alpha_per_replaced_norm():
    graph = load("dyt_vit")
    vit = load_spec(ROOT / "specs" / "vit.yaml")
    norms = sum(n.op == "layer_norm" for n in vit.nodes.values())
    assert norms == 25 and not any(n.op == "layer_norm" for n in graph.nodes.values())
    assert sum(n.op == "dyt" for n in graph.nodes.values()) == 25
    assert vit.total_params == 86_567_656
    assert graph.total_params == 86_567_656 + 25 == 86_567_681


@pytest.mark.parametrize("name,tokens", [("transformer_base", "tgt_tokens"), ("sparse_transformer", "tokens"),
                                         ("linear_transformer", "tokens")])
def test_autoregressive_outputs_do_not_depend_on_later_tokens(name, tokens):
    from nngraph.compilers.torch import build_module

    graph = load(name, table.read_header(SEEDS / f"{name}.yaml").small)
    model = build_module(graph, seed=0).eval()
    inputs = table.concrete_inputs(graph, table.SMALL_DIMS)
    changed = dict(inputs)
    changed[tokens] = inputs[tokens].clone()
    changed[tokens][:, -1] = (changed[tokens][:, -1] + 1) % 20
    with torch.no_grad():
        a, b = model(**inputs), model(**changed)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-5)
    assert not torch.allclose(a[:, -1], b[:, -1])


# ----- graphs ---------------------------------------------------------------------------
def test_graphsage_matches_sage_conv_linears_329_513():
    graph = load("graphsage")
    layers = meta(lambda: nn.ModuleList([nn.Linear(602, 256), nn.Linear(602, 256, bias=False),
                                         nn.Linear(256, 41), nn.Linear(256, 41, bias=False)]))
    assert graph.total_params == count(layers) == 329_513
    assert graph.nodes["sage1"].params["aggr"] == "mean" and graph.nodes["sage1"].params["normalize"] is True
    assert graph.nodes["sage2"].out.shape == ("num_nodes", 41)


def test_gin_node_classifier_matches_torch_mlps():
    graph = load("gin_node")

    def gin_mlp(f: int) -> nn.Module:
        return nn.Sequential(nn.Linear(f, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64))

    parts = meta(lambda: [gin_mlp(1433), gin_mlp(64), gin_mlp(64), nn.Linear(64, 7),
                          *[nn.Parameter(torch.empty(1)) for _ in range(3)]])
    assert graph.total_params == count(*parts) == 113_418
    assert graph.nodes["classifier"].out.shape == ("num_nodes", 7)
    assert math.isclose(graph.nodes["gin.0.conv"].params["eps"], 0.0)


# ----- control flow: time loops over cells, ACT, Neural ODE ------------------------------------------
def test_the_control_flow_systems_are_in_the_zoo():
    assert {p.stem for p in SPECS} >= {"awd_lstm", "recurrent_highway", "orthogonal_rnn",
                                       "seq2seq_luong_input_feeding", "universal_transformer", "neural_ode"}


def test_awd_lstm_matches_three_torch_lstms_and_a_tied_decoder_24_221_600():
    graph = load("awd_lstm")
    model = meta(lambda: nn.ModuleList([nn.Embedding(10000, 400), nn.LSTM(400, 1150), nn.LSTM(1150, 1150),
                                        nn.LSTM(1150, 400)]))
    assert graph.total_params == count(model) + 10000 == 24_221_600  # + the tied decoder's bias
    assert [graph.nodes[f"layer{i}"].params["cell"] for i in (1, 2, 3)] == ["lstm_step"] * 3
    assert graph.nodes["decoder"].params["tie"] == "embed"


def test_recurrent_highway_is_depth_10_highway_layers_per_step_23_482_400():
    graph = load("recurrent_highway")
    d = 830
    layers = meta(lambda: nn.ModuleList([nn.Embedding(10000, d), nn.Linear(d, 2 * d, bias=False)]
                                        + [nn.Linear(d, 2 * d) for _ in range(10)]))
    assert graph.total_params == count(layers) + 10000 == 23_482_400  # ~23M (Zilly et al., Table 3)
    cell = graph.nodes["rhn"].params["cell"].graph
    assert "deeper.8.s_new" in cell.nodes and "deeper.9.s_new" not in cell.nodes  # 1 + 9 layers per step


def test_orthogonal_rnn_counts_like_torch_rnn_cell_without_the_recurrent_bias():
    graph = load("orthogonal_rnn")
    model = meta(lambda: nn.ModuleList([nn.Linear(1, 256), nn.Linear(256, 256, bias=False), nn.Linear(256, 10)]))
    assert graph.total_params == count(model) == 68_618
    assert graph.nodes["rnn"].params["cell"].graph.nodes["rec"].params["parametrize"] == "orthogonal"


def test_luong_input_feeding_decoder_lstm_reads_embedding_plus_attentional_state_220_114_000():
    graph = load("seq2seq_luong_input_feeding")
    model = meta(lambda: nn.ModuleList([
        nn.Embedding(50000, 1000), nn.LSTM(1000, 1000, 4), nn.Embedding(50000, 1000), nn.LSTM(2000, 1000, 4),
        nn.Linear(2000, 1000, bias=False), nn.Linear(1000, 50000)]))
    assert graph.total_params == count(model) == 220_114_000
    assert graph.nodes["decoder"].outputs["attention"].shape == ("batch", "tgt", "src")
    assert graph.nodes["decoder"].outputs["feed"].shape == ("batch", 1000)


def test_universal_transformer_has_one_layer_of_weights_plus_the_halting_unit():
    graph = load("universal_transformer")
    model = meta(lambda: nn.ModuleList([nn.Embedding(32000, 512), *encoder_layers(1, 512, 8, 2048),
                                        nn.Linear(512, 1)]))
    assert graph.total_params == count(model) == 19_536_897
    assert graph.nodes["encoder"].params["max_steps"] == 8 and graph.nodes["encoder"].params["coordinates"] is True


def test_neural_ode_is_the_mlp_field_integrated_by_rk4():
    graph = load("neural_ode")
    assert graph.total_params == count(nn.Linear(2, 50), nn.Linear(50, 2)) == 252
    node = graph.nodes["ode"]
    assert (node.params["solver"], node.params["steps"]) == ("rk4", 20)
    assert node.outputs["trajectory"].shape == ("batch", 10, 2)
    assert load("neural_ode", ["graph.ode.solver=dopri5"]).nodes["ode"].params["solver"] == "dopri5"


# ----- added systems: Kalman filter, Reformer, GShard, GLaM ------------------------------
def test_reformer_is_a_reversible_lsh_transformer_with_shared_qk_projections():
    graph = load("reformer")
    d, ffn, vocab = 512, 2048, 256
    shared_qk_attention = lambda: [nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)]  # qk, v, out
    layer = lambda: [nn.LayerNorm(d), *shared_qk_attention(), nn.LayerNorm(d), nn.Linear(d, ffn), nn.Linear(ffn, d)]
    model = meta(lambda: nn.ModuleList([nn.Embedding(vocab, d), nn.Embedding(4096, d),
                                        *[m for _ in range(6) for m in layer()], nn.LayerNorm(2 * d),
                                        nn.Linear(2 * d, vocab)]))
    assert graph.total_params == count(model) == 19_831_040
    attn = graph.nodes["layers.3.attn"]
    assert attn.op == "lsh_attention" and attn.params["causal"] and attn.params["seed"] == 3
    assert (attn.params["n_buckets"], attn.params["n_hashes"], attn.params["chunk_size"]) == (32, 4, 64)
    assert graph.nodes["layers.5.both"].out.shape == ("batch", "seq", 2 * d)  # the two reversible streams



def _moe_layer(d: int, experts: int, hidden: int, bias: bool) -> list[nn.Module]:
    """A router [experts, d] (no bias) and ``experts`` two-linear FFNs."""
    return [nn.Linear(d, experts, bias=False),
            *[m for _ in range(experts) for m in (nn.Linear(d, hidden, bias=bias), nn.Linear(hidden, d, bias=bias))]]


def test_gshard_has_moe_every_other_layer_in_both_stacks_with_top2_capacity_routing():
    graph = load("gshard")
    d, ffn, e = 1024, 8192, 128
    attn = lambda: [nn.LayerNorm(d), nn.MultiheadAttention(d, 16)]
    dense = lambda: [nn.LayerNorm(d), nn.Linear(d, ffn), nn.Linear(ffn, d)]
    sparse = lambda: [nn.LayerNorm(d), *_moe_layer(d, e, ffn, True)]
    enc_pair = lambda: [*attn(), *dense(), *attn(), *sparse()]
    dec_pair = lambda: [*attn(), *attn(), *dense(), *attn(), *attn(), *sparse()]
    model = meta(lambda: nn.ModuleList([nn.Embedding(64000, d),  # one table: source, target and softmax
                                        *[m for _ in range(3) for m in enc_pair()], nn.LayerNorm(d),
                                        *[m for _ in range(3) for m in dec_pair()], nn.LayerNorm(d)]))
    assert graph.total_params == count(model) == 13_134_657_536
    moes = [n for n in graph.nodes.values() if n.op == "moe"]
    assert len(moes) == 6 and sum(n.op == "mlp" for n in graph.nodes.values()) == 6  # every other FFN sparse
    for node in moes:
        p = node.params
        assert (p["experts"], p["top_k"], p["capacity_factor"], p["normalize_top_k"]) == (128, 2, 1.0, True)


def test_glam_alternates_dense_and_top2_moe_decoder_layers():
    graph = load("glam")
    d, ffn, e = 768, 3072, 64
    attn = lambda: [nn.LayerNorm(d), nn.MultiheadAttention(d, 12)]
    pair = lambda: [*attn(), nn.LayerNorm(d), nn.Linear(d, ffn, bias=False), nn.Linear(ffn, d, bias=False),
                    *attn(), nn.LayerNorm(d), *_moe_layer(d, e, ffn, False)]
    model = meta(lambda: nn.ModuleList([nn.Embedding(32000, d), nn.Embedding(1024, d),
                                        *[m for _ in range(6) for m in pair()], nn.LayerNorm(d)]))
    assert graph.total_params == count(model) == 1_894_295_040
    kinds = [n.op for n in graph.nodes.values() if n.op in ("mlp", "moe")]
    assert kinds == ["mlp", "moe"] * 6
    assert graph.nodes["layers.2.sparse.moe"].params["top_k"] == 2


# ----- the table script: export and training columns, README markers ---------------------
def test_header_parser_collects_trained_by_test_ids(tmp_path):
    spec = tmp_path / "x.yaml"
    spec.write_text("# System: X\n# trained-by: tests/a.py::test_one tests/b.py::test_two\n"
                    "# trained-by: tests/c.py::test_three\nnngraph: 1\n# trained-by: tests/ignored.py::t\n")
    assert table.read_header(spec).trained_by == ["tests/a.py::test_one", "tests/b.py::test_two", "tests/c.py::test_three"]


def test_export_column_quotes_the_ort_difference_or_the_exporters_reason():
    row = table.check(SEEDS / "kalman_filter.yaml", export=True, tests=False)
    assert row.passed and row.exports is False
    assert row.exported.startswith("no: exporting 'kalman_filter' failed: UnsupportedOperatorError")
    assert row.trained == "not run (--no-tests)"
    ok, cell = table.export_check(SEEDS / "reformer.yaml", table.read_header(SEEDS / "reformer.yaml").small)
    diff = float(re.match(r"yes, max \|ORT − torch\| (\S+) \(≤ 0\.0001\)$", cell).group(1))
    assert ok and diff <= 1e-4


def test_training_tests_are_run_and_their_outcome_recorded(tmp_path):
    tests = tmp_path / "test_learns.py"
    tests.write_text("def test_learns():\n    assert 1 + 1 == 2\n\ndef test_does_not():\n    assert 1 + 1 == 3\n")
    ok, cell = table.run_tests([f"{tests}::test_learns"])
    assert ok and re.fullmatch(r"yes: test_learns passed \(\d+ s\)", cell)
    ok, cell = table.run_tests([f"{tests}::test_does_not"])
    assert not ok and cell.startswith("no: test_does_not: ") and "1 failed" in cell


def _row(name: str, **cells) -> "table.Row":
    row = table.Row(SEEDS / f"{name}.yaml", table.read_header(SEEDS / f"{name}.yaml"))
    for key, value in cells.items():
        setattr(row, key, value)
    return row


def test_readme_table_goes_between_the_markers_or_is_appended(tmp_path):
    rows = [_row("kalman_filter", validated="yes", compiled="yes, 63 torch parameters", forward_backward="yes, 38",
                 exported="no: exporting failed", trained="yes: test_x passed (3 s)"),
            _row("reformer", validated="yes", compiled="yes", forward_backward="yes", exported="yes, max |d| 1e-07",
                 trained="— (no train: section or training test)")]
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{table.README_BEGIN}\nold table\n{table.README_END}\n\n## After\n")
    table.write_readme(readme, rows)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# Title\n\nintro\n\n<!-- seed-zoo:begin -->")
    assert text.endswith("<!-- seed-zoo:end -->\n\n## After\n")
    assert ("| Linear Gaussian state space model with a Kalman filter layer (Kalman, 1960) | "
            "[specs/seeds/kalman_filter.yaml](specs/seeds/kalman_filter.yaml) | yes | yes | yes | no | yes |") in text
    assert "| Reformer (Kitaev et al., 2020) | [specs/seeds/reformer.yaml](specs/seeds/reformer.yaml) | yes | yes | yes | yes | — |" in text
    table.write_readme(readme, rows)  # idempotent
    assert readme.read_text() == text
    bare = tmp_path / "BARE.md"
    bare.write_text("# Only a title\n")
    table.write_readme(bare, rows)
    assert bare.read_text().startswith("# Only a title\n\n## Seed zoo\n\n<!-- seed-zoo:begin -->")
