"""Zoo specs for MoE, GNNs, diffusion and SSMs: parameter counts against published totals and against
equivalent models built here with torch.nn (on the meta device), plus their key shapes.

Published totals: Mixtral 8x7B 46,702,792,704 (HF MixtralForCausalLM); 2-layer GAT on Cora 92,373
(Veličković et al. setup, torch_geometric GATConv); 2-layer GCN on karate club 628 (34·16+16+16·4+4).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nngraph.limits import Limits

from _zoo import SPECS, count, load_clean as load, meta_device  # noqa: F401 - fixture


@pytest.fixture(autouse=True)
def _on_meta(meta_device):
    yield


# ----- graphs ------------------------------------------------------------------
def test_gcn_karate_club_has_628_parameters_and_per_node_logits():
    graph = load("gcn")
    torch_gcn = [nn.Linear(34, 16, bias=False), nn.Parameter(torch.empty(16)),
                 nn.Linear(16, 4, bias=False), nn.Parameter(torch.empty(4))]
    assert graph.total_params == count(*torch_gcn) == 628
    assert graph.nodes["conv2"].out.shape == ("num_nodes", 4)


def test_gat_cora_has_the_published_92_373_parameters():
    graph = load("gat")
    assert graph.total_params == 92_373
    assert graph.nodes["gat1"].out.shape == ("num_nodes", 64)
    assert graph.nodes["gat2"].out.shape == ("num_nodes", 7)


def test_gin_graph_classifier_matches_torch_mlps_and_pools_per_graph():
    graph = load("gin_graph")

    def gin_mlp(f: int) -> nn.Module:
        return nn.Sequential(nn.Linear(f, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64))

    eps = [nn.Parameter(torch.empty(1)) for _ in range(3)]
    torch_gin = [gin_mlp(7), gin_mlp(64), gin_mlp(64), *eps, nn.Linear(64, 64), nn.Linear(64, 2)]
    assert graph.total_params == count(*torch_gin) == 25_989
    assert graph.nodes["readout"].out.shape == ("num_graphs", 64)
    assert graph.nodes["fc2"].out.shape == ("num_graphs", 2)


# ----- mixture of experts ------------------------------------------------------
def mixtral(vocab: int, d: int, heads: int, kv: int, layers: int, experts: int, hidden: int) -> list[nn.Module]:
    head_dim = d // heads

    def layer() -> nn.ModuleList:
        attn = [nn.Linear(d, d, bias=False), nn.Linear(d, kv * head_dim, bias=False),
                nn.Linear(d, kv * head_dim, bias=False), nn.Linear(d, d, bias=False)]
        experts_ = [nn.ModuleList([nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False),
                                   nn.Linear(hidden, d, bias=False)]) for _ in range(experts)]
        return nn.ModuleList([nn.RMSNorm(d), *attn, nn.RMSNorm(d), nn.Linear(d, experts, bias=False), *experts_])

    return [nn.Embedding(vocab, d), *[layer() for _ in range(layers)], nn.RMSNorm(d), nn.Linear(d, vocab, bias=False)]


def test_mixtral_style_matches_a_torch_sparse_moe_decoder():
    graph = load("mixtral_style")
    assert graph.total_params == count(*mixtral(1024, 128, 4, 2, 2, 8, 256))
    moe = graph.nodes["layers.1.moe"]
    assert moe.params["experts"] == 8 and moe.params["top_k"] == 2 and moe.params["expert"] == "swiglu"
    assert moe.outputs["aux_loss"].shape == () and moe.outputs["z_loss"].shape == ()
    assert graph.nodes["lm_head"].out.shape == ("batch", "seq", 1024)


def test_mixtral_style_at_8x7b_sizes_has_the_published_46_702_792_704_parameters():
    graph = load("mixtral_style", ["vocab=32000", "d_model=4096", "heads=32", "kv_heads=8", "layers=32",
                                   "expert_hidden=14336"], Limits(max_params=10**11, max_memory=0))  # counted, never allocated
    assert graph.total_params == 46_702_792_704
    assert graph.nodes["layers.31.moe"].n_params == 1_409_318_912


# ----- state space ---------------------------------------------------------------
class MambaMixer(nn.Module):
    """The parameters of mamba_ssm's Mamba block."""

    def __init__(self, d: int, d_state: int = 16, d_conv: int = 4, expand: int = 2):
        super().__init__()
        di, r = expand * d, math.ceil(d / 16)
        self.in_proj = nn.Linear(d, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1)
        self.x_proj = nn.Linear(di, r + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(r, di)
        self.A_log = nn.Parameter(torch.empty(di, d_state))
        self.D = nn.Parameter(torch.empty(di))
        self.out_proj = nn.Linear(di, d, bias=False)


def mamba_lm(vocab: int, d: int, layers: int) -> list[nn.Module]:
    blocks = [nn.ModuleList([nn.RMSNorm(d), MambaMixer(d)]) for _ in range(layers)]
    return [nn.Embedding(vocab, d), *blocks, nn.RMSNorm(d)]  # lm head tied to the embedding


def test_mamba_style_matches_a_torch_mamba_stack_with_tied_head():
    graph = load("mamba_style")
    assert graph.total_params == count(*mamba_lm(1024, 128, 4))
    assert graph.nodes["lm_head"].n_params == 0
    assert graph.nodes["layers.3.mixer"].out.shape == ("batch", "seq", 128)


def test_mamba_style_at_130m_sizes():
    graph = load("mamba_style", ["vocab=50280", "d_model=768", "layers=24"])
    assert graph.total_params == count(*mamba_lm(50280, 768, 24)) == 129_135_360


# ----- diffusion ---------------------------------------------------------------
class ResnetBlock2D(nn.Module):
    def __init__(self, c: int, out: int, temb: int = 128, groups: int = 8):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c), nn.Conv2d(c, out, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, out), nn.Conv2d(out, out, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(c, out, 1) if c != out else None


def test_ddpm_unet_matches_a_torch_unet_and_predicts_noise_shaped_like_x():
    graph = load("ddpm_unet")
    transformer = [nn.LayerNorm(64), nn.MultiheadAttention(64, 4), nn.LayerNorm(64), nn.MultiheadAttention(64, 4)]
    torch_unet = [nn.Linear(32, 128), nn.Linear(128, 128), nn.Embedding(11, 64), nn.Conv2d(1, 32, 3, padding=1),
                  ResnetBlock2D(32, 32), ResnetBlock2D(32, 64), ResnetBlock2D(64, 64), *transformer,
                  ResnetBlock2D(64, 64), ResnetBlock2D(128, 64), ResnetBlock2D(96, 32),
                  nn.GroupNorm(8, 32), nn.Conv2d(32, 1, 3, padding=1)]
    assert graph.total_params == count(*torch_unet) == 481_153
    assert graph.nodes["conv_out"].out.shape == ("batch", 1, 8, 8)
    assert graph.nodes["mid_attn.self_attn"].out.shape == ("batch", 4, 64)  # 2x2 positions at the bottom
    assert graph.nodes["mid_attn.cross_attn"].out.shape == ("batch", 4, 64)


def test_ddpm_unet_on_28x28_images_attends_over_7x7_positions():
    graph = load("ddpm_unet", ["size=28"])
    assert graph.nodes["conv_out"].out.shape == ("batch", 1, 28, 28)
    assert graph.nodes["mid_attn.self_attn"].out.shape == ("batch", 49, 64)
    assert graph.total_params == 481_153
