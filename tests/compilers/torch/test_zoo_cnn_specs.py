"""Zoo specs of issue 17 against independent oracles at small sizes (fp32, random weights, no downloads):
ConvNeXt-T = HF ConvNextForImageClassification, MobileNetV2 = HF MobileNetV2ForImageClassification (torchvision's
layout), a WaveNet-style TCN, a U-Net at odd input sizes and a Siamese contrastive encoder = torch.nn models written
here. Torch parity <= 1e-5 and ONNX Runtime parity <= 1e-4, both relative to the output's scale (max |oracle|, at
least 1). The published parameter counts at full size are asserted by the front end (no torch)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from nngraph import load_spec as front_end_load
from nngraph.compilers.torch import build_module, load_spec

transformers = pytest.importorskip("transformers")
SPECS = Path(__file__).resolve().parents[3] / "specs"


def _compile(name: str, overrides: list[str]):
    graph = load_spec(SPECS / f"{name}.yaml", overrides)
    return graph, build_module(graph, seed=0).eval()


def _load_renamed(model: torch.nn.Module, source: dict[str, torch.Tensor], rename) -> None:
    """Load ``source`` (the oracle's state dict) into ``model``, our key k taking source[rename(k)]; every key used."""
    ours = model.state_dict()
    mapped = {k: source[rename(k)] for k in ours}
    assert {rename(k) for k in ours} == set(source), set(source) ^ {rename(k) for k in ours}
    model.load_state_dict(mapped)


def _randomize(model: torch.nn.Module) -> None:
    """Non-trivial weights everywhere (oracles start norms at 1/0 and layer scales at 1e-6) and BN statistics."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(t + 0.2 * torch.randn(t.shape, generator=g) if "var" not in name
                        else torch.rand(t.shape, generator=g) + 0.5)


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    assert got.shape == want.shape, (got.shape, want.shape)
    return float((got - want).abs().max() / max(1.0, float(want.abs().max())))


def _parity(model, graph, onnx_check, feeds: dict[str, torch.Tensor], want: torch.Tensor, label: str) -> None:
    with torch.no_grad():
        got = model(**feeds)
    got = next(iter(got.values())) if isinstance(got, dict) else got
    err = _rel(got, want)
    ort = onnx_check(model, graph, {k: v.numpy() for k, v in feeds.items()})
    print(f"{label}: torch {err:.2e}, ORT {ort:.2e}")
    assert err <= 1e-5 and ort <= 1e-4


def _image_classifier_parity(hf: torch.nn.Module, spec: str, overrides: list[str], rename, onnx_check) -> None:
    """Our spec at ``overrides`` against the HF image classifier ``hf`` (randomized, weights copied by ``rename``):
    the same parameter count, logits on a 2-image batch in torch and ORT."""
    _randomize(hf)
    graph, model = _compile(spec, overrides)
    assert graph.total_params == sum(p.numel() for p in hf.parameters())
    _load_renamed(model, hf.state_dict(), rename)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = hf(x).logits
    _parity(model, graph, onnx_check, {"image": x}, want, spec)


# ----- ConvNeXt-T ---------------------------------------------------------------------------------------------
CONVNEXT_SMALL = ["size=32", "d0=8", "d1=16", "d2=24", "d3=32", "n0=1", "n1=1", "n2=2", "n3=1", "classes=10"]


def _convnext_hf_name(k: str) -> str:
    rules = [(r"^stem\.", "convnext.embeddings.patch_embeddings."), (r"^stem_norm\.norm\.", "convnext.embeddings.layernorm."),
             (r"^stage(\d)\.(\d+)\.gamma$", lambda m: f"convnext.encoder.stages.{int(m[1]) - 1}.layers.{m[2]}.layer_scale_parameter"),
             (r"^stage(\d)\.(\d+)\.norm\.", lambda m: f"convnext.encoder.stages.{int(m[1]) - 1}.layers.{m[2]}.layernorm."),
             (r"^stage(\d)\.(\d+)\.", lambda m: f"convnext.encoder.stages.{int(m[1]) - 1}.layers.{m[2]}."),
             (r"^down(\d)\.norm\.norm\.", lambda m: f"convnext.encoder.stages.{int(m[1]) - 1}.downsampling_layer.0."),
             (r"^down(\d)\.conv\.", lambda m: f"convnext.encoder.stages.{int(m[1]) - 1}.downsampling_layer.1."),
             (r"^head_norm\.", "convnext.layernorm."), (r"^fc\.", "classifier.")]
    for pattern, repl in rules:
        if re.search(pattern, k):
            return re.sub(pattern, repl, k)
    return k


def test_convnext_tiny_has_the_published_parameter_count():
    assert front_end_load(SPECS / "convnext_tiny.yaml").total_params == 28_589_128


def test_convnext_matches_hugging_face_convnext_in_torch_and_onnx_runtime(onnx_check):
    cfg = transformers.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1], num_labels=10,
                                      layer_norm_eps=1e-6, layer_scale_init_value=1e-6, image_size=32)
    torch.manual_seed(0)
    hf = transformers.ConvNextForImageClassification(cfg).eval()
    _image_classifier_parity(hf, "convnext_tiny", CONVNEXT_SMALL, _convnext_hf_name, onnx_check)


# ----- MobileNetV2 --------------------------------------------------------------------------------------------
MOBILENET_SMALL = ["size=32", "width_mult=0.25", "classes=10", "bn_eps=0.001"]  # HF's BatchNorm eps is 1e-3
_FIRST_LAYER = {2: 0, 3: 2, 4: 5, 5: 9, 6: 12, 7: 15}  # HF numbers the 16 blocks after its stem 0..15


def _mobilenet_hf_name(k: str) -> str:
    k = k.replace(".cb.", ".").replace(".body.", ".")
    k = re.sub(r"\.conv\.(\w+)$", r".convolution.\1", re.sub(r"\.bn\.(\w+)$", r".normalization.\1", k))
    k = re.sub(r"\.expand\.", ".expand_1x1.", re.sub(r"\.dw\.", ".conv_3x3.", re.sub(r"\.project\.", ".reduce_1x1.", k)))
    k = re.sub(r"^stem\.", "mobilenet_v2.conv_stem.first_conv.", k)
    k = re.sub(r"^stage1\.", "mobilenet_v2.conv_stem.", k)
    k = re.sub(r"^stage(\d)\.b0\.", lambda m: f"mobilenet_v2.layer.{_FIRST_LAYER[int(m[1])]}.", k)
    k = re.sub(r"^stage(\d)\.rest\.(\d+)\.block\.", lambda m: f"mobilenet_v2.layer.{_FIRST_LAYER[int(m[1])] + 1 + int(m[2])}.", k)
    k = re.sub(r"^stage7\.", "mobilenet_v2.layer.15.", k)
    return re.sub(r"^head_conv\.", "mobilenet_v2.conv_1x1.", re.sub(r"^fc\.", "classifier.", k))


def test_mobilenet_v2_has_the_published_parameter_count():
    assert front_end_load(SPECS / "mobilenet_v2.yaml").total_params == 3_504_872


def test_mobilenet_v2_matches_hugging_face_mobilenet_v2_in_torch_and_onnx_runtime(onnx_check):
    """HF with tf_padding off is torchvision's layout (symmetric (k-1)/2 padding), at width 0.25 the same widths."""
    cfg = transformers.MobileNetV2Config(depth_multiplier=0.25, image_size=32, num_labels=10, tf_padding=False)
    torch.manual_seed(0)
    hf = transformers.MobileNetV2ForImageClassification(cfg).eval()
    _image_classifier_parity(hf, "mobilenet_v2", MOBILENET_SMALL, _mobilenet_hf_name, onnx_check)


# ----- TCN (WaveNet-style dilated causal convolutions) --------------------------------------------------------
class TorchTCN(torch.nn.Module):
    """Bai et al.'s TemporalBlock chain written here with F.pad (left only) + nn.Conv1d; the last step's logits."""

    def __init__(self, in_ch: int, ch: int, levels: int, k: int, classes: int):
        super().__init__()
        self.k = k
        self.convs = torch.nn.ModuleList(
            torch.nn.ModuleList([torch.nn.Conv1d(in_ch if i == 0 else ch, ch, k, dilation=2 ** i),
                                 torch.nn.Conv1d(ch, ch, k, dilation=2 ** i)]) for i in range(levels))
        self.downsample = torch.nn.Conv1d(in_ch, ch, 1)
        self.fc = torch.nn.Linear(ch, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (c1, c2) in enumerate(self.convs):
            d = 2 ** i
            y = torch.relu(c1(torch.nn.functional.pad(x, ((self.k - 1) * d, 0))))
            y = torch.relu(c2(torch.nn.functional.pad(y, ((self.k - 1) * d, 0))))
            x = torch.relu(y + (self.downsample(x) if i == 0 else x))
        return self.fc(x[:, :, -1])


def _tcn_name(k: str) -> str:
    k = re.sub(r"^level0\.downsample\.", "downsample.", k)
    k = re.sub(r"^level0\.body\.conv(\d)\.conv\.", lambda m: f"convs.0.{int(m[1]) - 1}.", k)
    return re.sub(r"^levels\.(\d+)\.body\.conv(\d)\.conv\.", lambda m: f"convs.{int(m[1]) + 1}.{int(m[2]) - 1}.", k)


def test_tcn_matches_a_torch_tcn_with_left_only_padding_in_torch_and_onnx_runtime(onnx_check):
    graph, model = _compile("tcn", ["time=32", "ch=8", "levels=3", "k=3", "in_ch=2"])
    oracle = TorchTCN(2, 8, 3, 3, 10).eval()
    assert graph.total_params == sum(p.numel() for p in oracle.parameters())
    _load_renamed(model, oracle.state_dict(), _tcn_name)
    x = torch.randn(3, 2, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = oracle(x)
    # the last level's left pad: (k - 1)·d = 2·4 zeros before the 32 steps, none after (one node)
    assert [n.out.shape for n in graph.nodes.values() if n.op == "pad"][-1] == ("batch", 8, 32 + 2 * 4)
    _parity(model, graph, onnx_check, {"x": x}, want, "tcn")


# ----- U-Net at odd input sizes -------------------------------------------------------------------------------
def _double_conv(c_in: int, c: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Conv2d(c_in, c, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.ReLU())


class TorchUNet(torch.nn.Module):
    """milesial/Pytorch-UNet's scheme written here: the upsampled map padded at run time to its skip's size."""

    def __init__(self, in_ch: int, base: int, classes: int):
        super().__init__()
        widths = [base * 2 ** i for i in range(5)]
        self.downs = torch.nn.ModuleList([_double_conv(in_ch, base)] + [_double_conv(a, b) for a, b in zip(widths, widths[1:])])
        self.ups = torch.nn.ModuleList(torch.nn.ConvTranspose2d(b, a, 2, 2) for a, b in zip(widths, widths[1:]))
        self.up_convs = torch.nn.ModuleList(_double_conv(b, a) for a, b in zip(widths, widths[1:]))
        self.head = torch.nn.Conv2d(base, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, down in enumerate(self.downs):
            x = down(x if i == 0 else torch.nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, conv in zip(reversed(self.ups), reversed(self.up_convs)):
            skip, x = skips.pop(), up(x)
            dh, dw = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
            x = torch.nn.functional.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
            x = conv(torch.cat([skip, x], dim=1))
        return self.head(x)


def _unet_name(k: str) -> str:
    k = re.sub(r"^down0\.conv(\d)\.", lambda m: f"downs.0.{2 * int(m[1]) - 2}.", k)
    k = re.sub(r"^down(\d)\.convs\.conv(\d)\.", lambda m: f"downs.{m[1]}.{2 * int(m[2]) - 2}.", k)
    k = re.sub(r"^bottom\.convs\.conv(\d)\.", lambda m: f"downs.4.{2 * int(m[1]) - 2}.", k)
    k = re.sub(r"^up(\d)\.up\.", lambda m: f"ups.{int(m[1]) - 1}.", k)
    return re.sub(r"^up(\d)\.convs\.conv(\d)\.", lambda m: f"up_convs.{int(m[1]) - 1}.{2 * int(m[2]) - 2}.", k)


def test_unet_at_odd_sizes_matches_a_torch_unet_in_torch_and_onnx_runtime(onnx_check):
    """21x27 pools to 10x13, 5x6, 2x3, 1x1: the decoder pads by 1 at four of its eight (level, axis) pairs."""
    graph, model = _compile("unet", ["height=21", "width=27", "base=4", "classes=3", "in_ch=2"])
    oracle = TorchUNet(2, 4, 3).eval()
    assert graph.total_params == sum(p.numel() for p in oracle.parameters())
    _load_renamed(model, oracle.state_dict(), _unet_name)
    pads = {n.name: n.params["pads"] for n in graph.nodes.values() if n.op == "pad"}
    assert pads == {"up4.pad": [0, 1, 0, 0], "up3.pad": [0, 0, 0, 1], "up2.pad": [0, 1, 0, 0], "up1.pad": [0, 1, 0, 1]}
    x = torch.randn(2, 2, 21, 27, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = oracle(x)
    assert want.shape == (2, 3, 21, 27)
    _parity(model, graph, onnx_check, {"image": x}, want, "unet")


# ----- Siamese encoder with a contrastive loss ----------------------------------------------------------------
class TorchSiamese(torch.nn.Module):
    """One encoder applied to both images; d = √max(‖e_a − e_b‖², ε), L = mean(y d² + (1 − y) max(0, m − d)²)."""

    def __init__(self, c1: int, c2: int, flat: int, hidden: int, emb: int):
        super().__init__()
        self.encoder = torch.nn.Sequential(
            torch.nn.Conv2d(1, c1, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(c1, c2, 5),
            torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(flat, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, emb))

    def forward(self, a, b, similar, margin: float = 1.0, eps: float = 1e-12):
        d = torch.sqrt(torch.clamp(((self.encoder(a) - self.encoder(b)) ** 2).sum(-1), min=eps))
        loss = (similar * d ** 2 + (1 - similar) * torch.clamp(margin - d, min=0) ** 2).mean()
        return d, loss


_SIAMESE_LAYERS = {"conv1": 0, "conv2": 3, "fc1": 7, "fc2": 9}


def test_siamese_shares_one_encoder_and_matches_a_torch_contrastive_loss_in_torch_and_onnx_runtime(onnx_check):
    graph, model = _compile("siamese_contrastive", ["size=16", "c1=4", "c2=6", "hidden=16", "emb=8", "margin=2.0"])
    oracle = TorchSiamese(4, 6, 6, 16, 8).eval()  # 16 -> 12 -> 6 -> 2 -> 1: flat = 6 channels x 1 x 1
    _randomize(oracle)
    assert graph.total_params == sum(p.numel() for p in oracle.parameters())  # the second use adds nothing
    _load_renamed(model, oracle.state_dict(),
                  lambda k: re.sub(r"^enc_[ab]\.(\w+)\.", lambda m: f"encoder.{_SIAMESE_LAYERS[m[1]]}.", k))
    state = model.state_dict()
    assert all(state[k].data_ptr() == state[k.replace("enc_a", "enc_b")].data_ptr() for k in state if "enc_a" in k)
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(6, 1, 16, 16, generator=g), torch.randn(6, 1, 16, 16, generator=g)
    b[:2] = a[:2]  # two identical pairs: d = √ε, no NaN
    similar = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    with torch.no_grad():
        d, loss = oracle(a, b, similar, margin=2.0)
        got = model(a=a, b=b, similar=similar)
    assert 0 < float(d[2:].min()) < 2 < float(d.max())  # pairs on both sides of the margin
    assert _rel(got["distance"], d) <= 1e-5 and _rel(got["loss"], loss) <= 1e-5
    ort = onnx_check(model, graph, {"a": a.numpy(), "b": b.numpy(), "similar": similar.numpy()})
    print(f"siamese: torch {max(_rel(got['distance'], d), _rel(got['loss'], loss)):.2e}, ORT {ort:.2e}")
    assert ort <= 1e-4
