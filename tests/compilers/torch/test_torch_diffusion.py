"""Torch diffusion: q_sample statistics vs the closed form, schedules vs their formulas, DDIM(η=1) = DDPM posterior,
samplers on Gaussian data with the exact ε predictor, diffusers parity (schedulers, timestep embedding, ResnetBlock2D)
when diffusers is installed, the PNG grid writer, the ddpm_unet spec and `nngraph sample`."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nngraph.compilers.torch import build_module, load_spec
from nngraph.compilers.torch.diffusion_sampling import (ddim_step, ddpm_step, eps_loss, make_schedule, q_sample, sample,
                                                timesteps)
from nngraph.compilers.torch.image_grid import grid, png_bytes

ROOT = Path(__file__).resolve().parents[3]
UNET = ROOT / "specs" / "ddpm_unet.yaml"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----- schedules and q_sample --------------------------------------------------------------
def test_linear_and_cosine_schedules_follow_their_formulas():
    lin = make_schedule("linear", 1000, 1e-4, 0.02)
    assert lin.betas[0].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    assert lin.alphas_cumprod[2].item() == pytest.approx((1 - 1e-4) * (1 - lin.betas[1].item()) * (1 - lin.betas[2].item()))
    cos = make_schedule("cosine", 50)

    def f(t):
        return math.cos((t / 50 + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 10, 30, 48):
        assert cos.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert cos.betas.max().item() <= 0.999


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_diffusion_noise_node_has_the_closed_form_mean_and_variance(run_op, schedule):
    model, _ = run_op(f"{{name: n, op: diffusion_noise, in: [x0, t, noise], schedule: {schedule}, steps: 100}}",
                      "x0: {shape: [batch, 3], dtype: float32}\nt: {shape: [batch], dtype: int64}\n"
                      "noise: {shape: [batch, 3], dtype: float32}")
    n = 200_000
    x0 = torch.tensor([1.5, -2.0, 0.25]).expand(n, 3)
    t = torch.tensor([5, 60]).repeat_interleave(n // 2)
    xt = model(x0, t, torch.randn(n, 3, generator=_gen(1)))
    ab = make_schedule(schedule, 100).alphas_cumprod
    for half, step in ((slice(0, n // 2), 5), (slice(n // 2, n), 60)):
        a = ab[step].item()
        assert torch.allclose(xt[half].mean(0), math.sqrt(a) * x0[0], atol=0.01)
        assert torch.allclose(xt[half].var(0), torch.full((3,), 1 - a), rtol=0.02, atol=1e-4)


def test_diffusion_noise_rejects_a_step_outside_the_schedule(run_op):
    model, _ = run_op("{name: n, op: diffusion_noise, in: [x0, t, noise], steps: 10}",
                      "x0: {shape: [batch, 2], dtype: float32}\nt: {shape: [batch], dtype: int64}\n"
                      "noise: {shape: [batch, 2], dtype: float32}")
    with pytest.raises(ValueError, match=r"diffusion step 10 is out of range: t must be in 0\.\.9") as info:
        model(torch.zeros(2, 2), torch.tensor([3, 10]), torch.zeros(2, 2))
    assert any("in node 'n' (diffusion_noise)" in note for note in info.value.__notes__)


def test_eps_loss_is_the_mse_to_the_drawn_noise():
    sched = make_schedule("linear", 100)
    x0 = torch.randn(6, 2, 4, 4, generator=_gen(2))

    def model(x, t):
        return 0.5 * x + t[:, None, None, None] / 100

    got = eps_loss(model, x0, sched, _gen(3))
    g = _gen(3)
    t = torch.randint(0, 100, (6,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    xt = q_sample(x0, t, noise, sched)
    assert got.item() == pytest.approx(((model(xt, t) - noise) ** 2).mean().item(), rel=1e-6)


# ----- samplers -------------------------------------------------------------------------------
@pytest.mark.parametrize("n_steps", [1000, 50])
def test_ddim_with_eta_1_is_the_ddpm_posterior_step(n_steps):
    sched = make_schedule("linear", 1000)
    ts = timesteps(1000, n_steps)
    ratio = 1000 // n_steps
    x, eps, z = (torch.randn(3, 5, generator=_gen(i)) for i in (4, 5, 6))
    for t in ts[::7] + [ts[-1]]:
        prev = t - ratio
        ab_t, ab_prev = sched.alpha_bar(t), sched.alpha_bar(prev)
        beta = 1 - ab_t / ab_prev
        assert sched.posterior_variance(t, prev) == pytest.approx((1 - ab_prev) / (1 - ab_t) * beta)
        if n_steps == 1000 and t > 0:
            assert sched.posterior_variance(t) == pytest.approx(
                (1 - sched.alpha_bar(t - 1)) / (1 - ab_t) * sched.betas[t].item())
        ddim = ddim_step(eps, t, prev, x, sched, eta=1.0, noise=z if t > 0 else None)
        ddpm = ddpm_step(eps, t, prev, x, sched, noise=z)
        assert (ddim - ddpm).abs().max().item() <= 1e-5


def gaussian_eps(sched, mu: float, s: float):
    """The exact noise predictor E[ε | x_t] for data N(mu, s²): √(1−ᾱ)(x − √ᾱ·mu)/(ᾱs² + 1 − ᾱ)."""
    ab = sched.alphas_cumprod.tolist()

    def eps(x, t):
        a = ab[int(t[0])]
        return math.sqrt(1 - a) * (x - math.sqrt(a) * mu) / (a * s * s + 1 - a)

    return eps


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_with_the_exact_noise_predictor_recover_gaussian_data(sampler):
    # with all T = 1000 steps both the ancestral chain and the DDIM ODE (eta 0) end at N(mu, s²);
    # with fewer steps (or a coarse T) DDIM and fixed-small DDPM shrink the spread, a discretization effect
    sched = make_schedule("linear", 1000)
    out = sample(gaussian_eps(sched, 0.7, 0.3), (4000, 1), sched, 1000, sampler, 0.0, _gen(7))
    assert out.mean().item() == pytest.approx(0.7, abs=0.02)
    assert out.std().item() == pytest.approx(0.3, rel=0.05)


def test_sampling_is_reproducible_from_the_generator_seed():
    sched = make_schedule("cosine", 50)

    def model(x, t):
        return 0.1 * x

    a = sample(model, (2, 3), sched, 10, "ddpm", generator=_gen(8))
    b = sample(model, (2, 3), sched, 10, "ddpm", generator=_gen(8))
    c = sample(model, (2, 3), sched, 10, "ddpm", generator=_gen(9))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ----- diffusers parity ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def diffusers():
    return pytest.importorskip("diffusers")


@pytest.mark.parametrize("kind,name", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_add_noise_matches_diffusers_ddpm_scheduler(diffusers, kind, name):
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=name)
    x0, noise = torch.randn(4, 3, 8, 8, generator=_gen(10)), torch.randn(4, 3, 8, 8, generator=_gen(11))
    t = torch.tensor([0, 17, 500, 999])
    ours = q_sample(x0, t, noise, make_schedule(kind, 1000))
    assert (ours - ref.add_noise(x0, noise, t)).abs().max().item() <= 1e-5


_fake_eps = gaussian_eps(make_schedule("linear", 1000), 0.3, 0.5)


@pytest.mark.parametrize("n_steps", [1000, 25])
def test_ddpm_sampling_loop_matches_diffusers_step_by_step(diffusers, n_steps):
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, clip_sample=False)
    ref.set_timesteps(n_steps)
    assert [int(t) for t in ref.timesteps] == timesteps(1000, n_steps)
    x_T = torch.randn(2, 1, 4, 4, generator=_gen(12))
    g = _gen(13)
    x = x_T.clone()
    for t in ref.timesteps:
        x = ref.step(_fake_eps(x, t.view(1).expand(2)), t, x, generator=g).prev_sample
    ours = sample(_fake_eps, x_T.shape, make_schedule("linear", 1000), n_steps, "ddpm", generator=_gen(13), x_T=x_T)
    assert (ours - x).abs().max().item() <= 1e-4


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_sampling_loop_matches_diffusers_step_by_step(diffusers, eta):
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    ref.set_timesteps(40)
    fake = gaussian_eps(make_schedule("cosine", 1000), 0.3, 0.5)
    x_T = torch.randn(2, 1, 4, 4, generator=_gen(14))
    g = _gen(15)
    x = x_T.clone()
    for t in ref.timesteps:
        x = ref.step(fake(x, t.view(1).expand(2)), t, x, eta=eta, generator=g).prev_sample
    ours = sample(fake, x_T.shape, make_schedule("cosine", 1000), 40, "ddim", eta, _gen(15), x_T=x_T)
    assert (ours - x).abs().max().item() <= 1e-4


@pytest.mark.parametrize("dim,flip,shift", [(32, False, 0.0), (33, True, 1.0)])
def test_timestep_embedding_matches_diffusers(run_op, diffusers, dim, flip, shift):
    from diffusers.models.embeddings import TimestepEmbedding, get_timestep_embedding

    model, _ = run_op(f"{{name: n, op: timestep_embedding, in: t, dim: {dim}, out: 24, "
                      f"flip_sin_to_cos: {str(flip).lower()}, freq_shift: {shift}}}",
                      "t: {shape: [batch], dtype: int64}")
    ref = TimestepEmbedding(dim, 24)
    model.n.load_state_dict(ref.state_dict(), strict=True)
    t = torch.tensor([0, 3, 250, 999])
    want = ref(get_timestep_embedding(t, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift))
    assert (model(t) - want).abs().max().item() <= 1e-5


def test_sinusoidal_embedding_without_mlp_is_the_formula(run_op):
    model, _ = run_op("{name: n, op: timestep_embedding, in: t, dim: 8}", "t: {shape: [batch], dtype: int64}")
    t = torch.tensor([0, 7, 123])
    freqs = torch.tensor([10000 ** (-i / 4) for i in range(4)])
    want = torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)
    assert (model(t) - want).abs().max().item() <= 1e-5
    assert not list(model.parameters())


@pytest.mark.parametrize("mode,out", [("add", 16), ("scale_shift", 8)])
def test_res_block_matches_diffusers_resnet_block(run_op, diffusers, mode, out):
    from diffusers.models.resnet import ResnetBlock2D

    model, graph = run_op(f"{{name: n, op: res_block, in: {{x: x, temb: temb}}, out: {out}, groups: 4, "
                          f"temb_mode: {mode}}}",
                          "x: {shape: [batch, 8, 6, 6], dtype: float32}\ntemb: {shape: [batch, 12], dtype: float32}")
    ref = ResnetBlock2D(in_channels=8, out_channels=out, temb_channels=12, groups=4, eps=1e-5,
                        time_embedding_norm="default" if mode == "add" else mode)
    for p in ref.parameters():  # non-trivial norms
        torch.nn.init.normal_(p, std=0.3, generator=_gen(16))
    model.n.load_state_dict(ref.state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    x, temb = torch.randn(2, 8, 6, 6, generator=_gen(17)), torch.randn(2, 12, generator=_gen(18))
    assert (model(x, temb) - ref(x, temb)).abs().max().item() <= 1e-5


def test_res_block_without_temb_is_the_residual_formula(run_op):
    model, _ = run_op("{name: n, op: res_block, in: x, groups: 2}", "x: {shape: [batch, 4, 5, 5], dtype: float32}")
    m = model.n
    x = torch.randn(2, 4, 5, 5, generator=_gen(19))
    h = m.conv1(F.silu(F.group_norm(x, 2, m.norm1.weight, m.norm1.bias, 1e-5)))
    h = m.conv2(F.silu(F.group_norm(h, 2, m.norm2.weight, m.norm2.bias, 1e-5)))
    assert (model(x) - (x + h)).abs().max().item() <= 1e-5


# ----- PNG grids ----------------------------------------------------------------------------------
def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, color type, raw pixel bytes) of an 8-bit non-interlaced PNG with filter-0 rows, CRCs checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    w, h, depth, color, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8 and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = w * (1 if color == 0 else 3)
    rows = [raw[i * (stride + 1):(i + 1) * (stride + 1)] for i in range(h)]
    assert all(r[0] == 0 for r in rows)
    return w, h, color, b"".join(r[1:] for r in rows)


@pytest.mark.parametrize("channels", [1, 3])
def test_png_grid_round_trips_the_pixels(channels):
    imgs = torch.rand(5, channels, 4, 3, generator=_gen(20)) * 2 - 1
    tiled = grid(imgs, nrow=3, padding=1)
    h, w = 2 * 5 + 1, 3 * 4 + 1
    assert tiled.shape[:2] == (h, w)
    expect = ((imgs[4] + 1) / 2 * 255).round().to(torch.uint8)  # 5th image: row 1, column 1
    got = tiled[6:10, 5:8]
    assert torch.equal(got if channels == 1 else got.permute(2, 0, 1), expect[0] if channels == 1 else expect)
    width, height, color, pixels = decode_png(png_bytes(tiled))
    assert (width, height, color) == (w, h, 0 if channels == 1 else 2)
    assert pixels == tiled.numpy().tobytes()
    try:
        from PIL import Image
    except ImportError:
        return
    import io

    with Image.open(io.BytesIO(png_bytes(tiled))) as im:
        assert im.size == (w, h) and im.tobytes() == pixels


# ----- the zoo denoiser and `nngraph sample` --------------------------------------------------------
def test_ddpm_unet_trains_on_the_eps_loss_and_samples(tmp_path):
    from typer.testing import CliRunner

    from nngraph import cli
    from nngraph.compilers.torch.weights import save_weights

    graph = load_spec(UNET)
    model = build_module(graph, seed=0)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 481_153
    sched = make_schedule("linear", 1000)
    labels = torch.tensor([1, 2, 10, 3])

    def denoiser(x, t):
        return model(x, t, labels)

    x0 = torch.rand(4, 1, 8, 8, generator=_gen(21)) * 2 - 1
    loss = eps_loss(denoiser, x0, sched, _gen(22))
    loss.backward()
    assert math.isfinite(loss.item()) and all(p.grad is not None for p in model.parameters())
    weights = tmp_path / "unet.pt"
    save_weights(model, graph, weights)

    runner = CliRunner()
    out1, out2 = tmp_path / "a.png", tmp_path / "b.png"
    for out in (out1, out2):
        res = runner.invoke(cli.app, ["sample", str(UNET), "--weights", str(weights), "--steps", "4", "--seed", "3",
                                      "-n", "6", "--cond", "label=7", "--sampler", "ddim", "-o", str(out)])
        assert res.exit_code == 0, res.output
    assert f"wrote {out2} (6 samples [1, 8, 8], ddim, 4 steps, eta=0.0, label=7; " in res.output
    assert out1.read_bytes() == out2.read_bytes()  # the seed fixes the samples
    width, height, color, _ = decode_png(out1.read_bytes())
    assert (width, height, color) == (3 * (64 + 2) + 2, 2 * (64 + 2) + 2, 0)  # 8x8 images upscaled 8x, 3 per row
    bad = runner.invoke(cli.app, ["sample", str(UNET), "--cond", "colour=1", "-o", str(tmp_path / "c.png")])
    assert bad.exit_code == 1 and "--cond names no conditioning input: colour (inputs: label)" in bad.output
    assert not (tmp_path / "c.png").exists()


def test_sample_refuses_a_sample_count_that_cannot_fit_in_memory(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nngraph import cli, readers

    monkeypatch.setattr(readers, "machine_memory", lambda: 16 << 30)
    res = CliRunner().invoke(cli.app, ["sample", str(UNET), "-n", "1000000000", "-o", str(tmp_path / "s.png")])
    assert res.exit_code == 1 and not (tmp_path / "s.png").exists()
    # per 8x8 sample: 4 float32 copies (1 KB) + the grid's 64x64 RGB pixels (12 KB)
    assert res.output == ("error: -n 1000000000: 1,000,000,000 samples of [1, 8, 8] need at least 13.3 TB (the "
                          "sampler's images and the PNG grid), more than this machine's 17.2 GB of memory: "
                          "sample fewer\n")
