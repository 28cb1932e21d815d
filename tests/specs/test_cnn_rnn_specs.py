"""Parameter counts and output shapes of the CNN/RNN/VAE zoo specs against the same models built with torch.nn.

ResNet-18 is also pinned to its published count (torchvision.models.resnet18: 11,689,512).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from _zoo import count

from nngraph import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"


def load(name: str):
    return load_spec(SPECS / f"{name}.yaml")


def out_shape(graph, output: str, **symbols) -> tuple:
    """A graph output's shape with symbolic dims replaced by the given sizes."""
    ref = graph.outputs[output]
    t = graph.type_of(ref)
    return tuple(symbols.get(d, d) if isinstance(d, str) else d for d in t.shape)


# ----- ResNet-18 ---------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


def torch_resnet18(classes: int = 1000) -> nn.Module:
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for c, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(c_in, c, stride), BasicBlock(c, c, 1)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


def test_resnet18_has_the_published_parameter_count():
    assert load("resnet18").total_params == 11_689_512


def test_resnet18_matches_a_torch_build_in_count_and_output_shape():
    graph, model = load("resnet18"), torch_resnet18()
    assert graph.total_params == count(model)
    with torch.no_grad():
        y = model.eval()(torch.zeros(1, 3, 224, 224))
    assert out_shape(graph, "logits", batch=1) == tuple(y.shape)


def test_resnet18_downsample_blocks_halve_the_resolution():
    graph = load("resnet18")
    assert graph.nodes["layer1.1.relu2"].out.shape == ("batch", 64, 56, 56)
    assert graph.nodes["layer4.b0.down_conv"].out.shape == ("batch", 512, 7, 7)
    assert graph.nodes["layer4.b1.relu2"].out.shape == ("batch", 512, 7, 7)


# ----- LeNet-5 -----------------------------------------------------------
def test_lenet_matches_torch():
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2, 2),
        nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))
    graph = load("lenet")
    assert graph.total_params == count(model) == 61_706
    assert out_shape(graph, "logits", batch=2) == tuple(model(torch.zeros(2, 1, 28, 28)).shape)


# ----- char LSTM ---------------------------------------------------------
class CharLSTM(nn.Module):
    def __init__(self, vocab=128, embed=64, hidden=256, layers=2, dropout=0.2):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens, state=None):
        out, (h, c) = self.lstm(self.embed(tokens), state)
        return self.head(out), h, c


def test_char_lstm_matches_torch_and_exposes_its_state():
    graph, model = load("char_lstm"), CharLSTM()
    assert graph.total_params == count(model)
    logits, h, c = model(torch.zeros(3, 11, dtype=torch.long))
    assert out_shape(graph, "logits", batch=3, seq=11) == tuple(logits.shape)
    assert out_shape(graph, "h", batch=3) == tuple(h.shape)
    assert out_shape(graph, "c", batch=3) == tuple(c.shape)
    assert graph.inputs["h0"].optional and graph.inputs["c0"].optional
    assert graph.inputs["h0"].type.shape == (2, "batch", 256)
    lstm = graph.nodes["lstm"]
    assert lstm.inputs["h0"].node == "h0" and lstm.inputs["c0"].node == "c0"


# ----- GRU classifier ----------------------------------------------------
class GRUClassifier(nn.Module):
    def __init__(self, vocab=20000, embed=128, hidden=128, classes=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed, padding_idx=0)
        self.gru = nn.GRU(embed, hidden, bidirectional=True, batch_first=True)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(4 * hidden, classes)

    def forward(self, tokens):
        out, h = self.gru(self.embed(tokens))
        features = torch.cat([out.mean(dim=1), h.transpose(0, 1).flatten(1)], dim=-1)
        return self.head(self.drop(features))


def test_gru_classifier_matches_torch():
    graph, model = load("gru_classifier"), GRUClassifier()
    assert graph.total_params == count(model)
    assert out_shape(graph, "logits", batch=5) == tuple(model(torch.zeros(5, 9, dtype=torch.long)).shape)
    assert graph.nodes["features"].out.shape == ("batch", 512)


# ----- VAE ---------------------------------------------------------------
class VAE(nn.Module):
    def __init__(self, d_in=784, hidden=400, latent=20):
        super().__init__()
        self.enc = nn.Linear(d_in, hidden)
        self.mu, self.logvar = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d_in), nn.Sigmoid())

    def forward(self, x):
        h = torch.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1)).mean()
        return self.dec(z), kl


def test_vae_matches_torch_and_outputs_recon_and_scalar_kl():
    graph, model = load("vae"), VAE()
    assert graph.total_params == count(model)
    recon, kl = model(torch.zeros(4, 784))
    assert out_shape(graph, "recon", batch=4) == tuple(recon.shape)
    assert out_shape(graph, "kl") == tuple(kl.shape) == ()


@pytest.mark.parametrize("name", ["lenet", "resnet18", "char_lstm", "gru_classifier", "vae"])
def test_spec_starts_with_the_schema_comment(name):
    first = (SPECS / f"{name}.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../docs/nngraph.schema.json"
