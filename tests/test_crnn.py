"""CRNN-MRI (recon.models.crnn): shapes, equations, data consistency, batching, training."""

import math

import pytest
import torch
import torch.nn.functional as F

from recon.errors import InputError
from recon.fft import fft2c
from recon.models.config import CRNNConfig
from recon.models.crnn import CRNNMRI
from recon.sense import SenseOperator, data_consistency

SMALL = CRNNConfig(channels=8, cascades=2, layers=4)


def _crandn(g, *shape, dtype=torch.complex64):
    return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)).to(dtype)


def _problem(g, b, t, c, ny, nx, dtype=torch.complex64):
    """Random k-space, a line mask with the centre line, maps of unit sum of squares."""
    maps = _crandn(g, b, c, ny, nx, dtype=dtype)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.rand(b, t, ny, generator=g) < 0.4
    mask[..., ny // 2] = True
    k = _crandn(g, b, t, c, ny, nx, dtype=dtype) * mask[:, :, None, :, None]
    return k, mask, maps


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is as fast and does not suffer from a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(cfg=SMALL, seed=0, dtype=torch.float32):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return CRNNMRI(cfg).to(dtype)


def _naive(model: CRNNMRI, k, mask, maps):
    """The paper's equations written frame by frame, with explicit zero states."""
    b, t, _, ny, nx = k.shape
    nf = model.config.channels
    x = SenseOperator(maps, mask).adjoint(k)
    scale = x.abs().pow(2).mean(dim=(1, 2, 3)).sqrt()[:, None, None, None]
    x, k0 = x / scale, k / scale[..., None]
    zeros = torch.zeros(b, t, nf, ny, nx, dtype=model.conv_out.weight.dtype)
    h_iter, layers_prev = zeros, [zeros] * len(model.conv_x)
    cell = model.bcrnn

    def step(inp, hit, h):
        return F.relu(cell.i2h(inp) + cell.h2h(h) + cell.ih2ih(hit))

    for _ in range(model.config.cascades):
        xr = torch.view_as_real(x).permute(0, 1, 4, 2, 3)  # [b, t, 2, y, x]
        fwd, bwd, h = [], [None] * t, zeros[:, 0]
        for f in range(t):
            h = step(xr[:, f], h_iter[:, f], h)
            fwd.append(h)
        h = zeros[:, 0]
        for f in reversed(range(t)):
            h = step(xr[:, f], h_iter[:, f], h)
            bwd[f] = h
        feat = torch.stack(fwd, 1) + torch.stack(bwd, 1)
        h_iter = feat
        for j, (cx, ch) in enumerate(zip(model.conv_x, model.conv_h)):
            feat = torch.stack([F.relu(cx(feat[:, f]) + ch(layers_prev[j][:, f])) for f in range(t)], 1)
            layers_prev[j] = feat
        out = xr + torch.stack([model.conv_out(feat[:, f]) for f in range(t)], 1)
        x = data_consistency(torch.view_as_complex(out.permute(0, 1, 3, 4, 2).contiguous()), k0, maps, mask)
    return x * scale


@pytest.mark.parametrize("b,t,c,ny,nx", [(1, 1, 1, 8, 8), (2, 3, 2, 7, 9), (1, 4, 3, 11, 6)])
def test_shapes_odd_sizes_and_one_frame(b, t, c, ny, nx):
    g = torch.Generator().manual_seed(1)
    k, mask, maps = _problem(g, b, t, c, ny, nx)
    out = _model()(k, mask, maps)
    assert out.shape == (b, t, ny, nx) and out.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(out)).all()


@pytest.mark.parametrize("cfg", [SMALL, CRNNConfig(channels=4, cascades=3, layers=3)])
def test_matches_naive_frame_by_frame_equations(cfg):
    """Folding time into batch, merged directions and skipped zero-state convs change nothing."""
    g = torch.Generator().manual_seed(2)
    k, mask, maps = _problem(g, 2, 4, 2, 9, 7, dtype=torch.complex128)
    model = _model(cfg, dtype=torch.float64)
    torch.testing.assert_close(model(k, mask, maps), _naive(model, k, mask, maps), rtol=1e-10, atol=1e-10)


def test_gradients_reach_every_parameter():
    g = torch.Generator().manual_seed(3)
    k, mask, maps = _problem(g, 2, 3, 2, 8, 7)
    model = _model()
    model(k, mask, maps).abs().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_data_consistency_exact_on_sampled_kspace():
    g = torch.Generator().manual_seed(4)
    b, t, ny, nx = 2, 3, 10, 9
    maps = torch.exp(1j * torch.rand(b, 1, ny, nx, generator=g) * 2 * math.pi).to(torch.complex64)
    k, mask, _ = _problem(g, b, t, 1, ny, nx)
    out = _model()(k, mask, maps)
    k_out = fft2c(out[:, :, None] * maps[:, None])
    m = mask[:, :, None, :, None].expand_as(k)
    torch.testing.assert_close(k_out[m], k[m], rtol=1e-5, atol=1e-5 * k.abs().max().item())


def test_batch_equals_separate_runs():
    g = torch.Generator().manual_seed(5)
    k, mask, maps = _problem(g, 3, 4, 2, 9, 8)
    k[1] *= 100.0  # per-sample scale normalisation must stay per sample
    model = _model()
    together = model(k, mask, maps)
    for i in range(3):
        alone = model(k[i:i + 1], mask[i:i + 1], maps[i:i + 1])
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-5, atol=1e-5 * alone.abs().max().item())


def test_scale_equivariance():
    g = torch.Generator().manual_seed(6)
    k, mask, maps = _problem(g, 1, 3, 2, 8, 8)
    model = _model()
    torch.testing.assert_close(model(1e3 * k, mask, maps), 1e3 * model(k, mask, maps), rtol=1e-4, atol=1e-3)


def test_float_mask_equals_bool_mask():
    g = torch.Generator().manual_seed(7)
    k, mask, maps = _problem(g, 1, 2, 2, 8, 6)
    model = _model()
    torch.testing.assert_close(model(k, mask.float(), maps), model(k, mask, maps))


def test_parameter_count_paper_size():
    cfg = CRNNConfig(channels=64, cascades=5, layers=5)
    n = sum(p.numel() for p in CRNNMRI(cfg).parameters())
    conv = 9 * 64 * 64 + 64
    # BCRNN (i2h 2->64, h2h, ih2ih) + 3 CRNN-i layers (x and h convs) + output conv 64->2
    assert n == (9 * 2 * 64 + 64) + 2 * conv + 2 * 3 * conv + (9 * 64 * 2 + 2) == 297_794
    assert 0.25e6 < n < 0.35e6  # "about 0.3 M" (Qin et al. 2018)


def test_no_global_side_effects_and_inference_mode():
    g = torch.Generator().manual_seed(8)
    k, mask, maps = _problem(g, 1, 3, 2, 8, 8)
    model = _model()
    state = torch.get_rng_state()
    with torch.inference_mode():
        out = model(k, mask, maps)
    assert not out.requires_grad
    assert torch.equal(state, torch.get_rng_state())


def test_rejects_bad_shapes():
    g = torch.Generator().manual_seed(9)
    k, mask, maps = _problem(g, 1, 3, 2, 8, 8)
    model = _model()
    with pytest.raises(InputError):
        model(k[0], mask, maps)
    with pytest.raises(InputError):
        model(k, mask[:, :, :4], maps)
    with pytest.raises(InputError):
        model(k, mask, maps[:, :1])
    with pytest.raises(InputError):
        CRNNMRI(CRNNConfig(layers=2))


def test_tiny_overfit():
    """Twenty Adam steps on one structured sample halve the image loss (it falls below 0.2)."""
    g = torch.Generator().manual_seed(10)
    t, c, ny, nx = 4, 2, 16, 16
    yy, xx = torch.meshgrid(torch.arange(ny) - ny / 2, torch.arange(nx) - nx / 2, indexing="ij")
    frames = []
    for f in range(t):  # a disc whose radius beats over the cycle, on a static background
        r = 4.0 + 1.5 * math.sin(2 * math.pi * f / t)
        frames.append(torch.sigmoid(2.0 * (r - (yy ** 2 + xx ** 2).sqrt())) + 0.3 * (xx + nx / 2) / nx)
    phase = torch.exp(1j * 0.02 * (yy + xx))
    truth = (torch.stack(frames) * phase)[None].to(torch.complex64)  # [1, t, y, x]
    maps = torch.stack([torch.exp(-((yy - d) ** 2) / 200.0) * torch.exp(1j * 0.1 * d * xx)
                        for d in (-8.0, 8.0)])[None].to(torch.complex64)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.zeros(1, t, ny, dtype=torch.bool)
    for f in range(t):
        mask[0, f, f % 4::4] = True  # R=4, shifted per frame
    mask[..., ny // 2 - 1:ny // 2 + 2] = True
    k = fft2c(truth[:, :, None] * maps[:, None]) * mask[:, :, None, :, None]

    model = _model(CRNNConfig(channels=16, cascades=2, layers=4), seed=11)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = (model(k, mask, maps) - truth).abs().pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
