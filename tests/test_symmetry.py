"""The exact symmetries of a slice problem (recon/symmetry.py): reflections commute with the
centred FFT on odd and even sizes, and the physics (zero-filling, SENSE) commutes with every map."""

import pytest
import torch

from recon.baselines.sense import sense
from recon.baselines.zero_filled import zero_filled
from recon.fft import fft2c, fftc
from recon.problem import SliceProblem
from recon.symmetry import TTA_SETS, Symmetry, reflect


@pytest.mark.parametrize("n", [7, 8, 9, 16])
def test_reflection_commutes_with_the_centred_fft(n):
    x = torch.randn(3, n, dtype=torch.complex64)
    torch.testing.assert_close(fftc(reflect(x, -1), dims=(-1,)), reflect(fftc(x, dims=(-1,)), -1))
    torch.testing.assert_close(reflect(reflect(x, -1), -1), x)  # an involution
    # it fixes the centre index n // 2 (the DC sample)
    assert torch.equal(reflect(x, -1)[:, n // 2], x[:, n // 2])


def _problem(t=5, c=3, ny=11, nx=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(t, ny, nx, dtype=torch.complex64, generator=g)
    maps = torch.randn(c, ny, nx, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()
    mask = torch.rand(t, ny, generator=g) < 0.5
    k = fft2c(img[:, None] * maps[None]) * mask[:, None, :, None]
    return SliceProblem(k, mask, maps, 0.01), img


@pytest.mark.parametrize("g", TTA_SETS[8], ids=lambda g: f"t{int(g.time)}y{int(g.y)}x{int(g.x)}")
@pytest.mark.parametrize("shape", [(11, 10), (12, 9)])
def test_classical_reconstructions_commute_with_every_symmetry(g, shape):
    p, _ = _problem(ny=shape[0], nx=shape[1])
    q = g.problem(p)
    assert q.kspace.shape == p.kspace.shape and q.mask.shape == p.mask.shape and q.noise_sigma == p.noise_sigma
    torch.testing.assert_close(g.image(zero_filled(q)), zero_filled(p), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g.image(sense(q, lam=0.01)), sense(p, lam=0.01), atol=1e-4, rtol=1e-4)


def test_the_transformed_problem_is_the_transformed_object_measured():
    """``g p`` is the problem of the object ``g x`` seen by the coils ``g S`` on the lines ``g M``."""
    p, img = _problem()
    g = Symmetry(time=True, y=True, x=True)
    q = g.problem(p)
    k = fft2c(g.image(img)[:, None] * q.maps[None]) * q.mask[:, None, :, None]
    torch.testing.assert_close(q.kspace, k, atol=1e-5, rtol=1e-5)


def test_tta_sets_are_distinct_group_elements():
    for n, gs in TTA_SETS.items():
        assert len(gs) == n == len(set(gs)) and gs[0] == Symmetry()
