"""Centred orthonormal FFT conventions (docs/design.md §3), on even and odd sizes."""

import numpy as np
import pytest
import torch

from recon.fft import centring_signs, fft2c, fftc, ifft2c, ifftc
from recon.kspace import center_crop, remove_readout_oversampling, to_recon_grid


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (5, 6), (33, 17)])
def test_roundtrip_and_unitary(shape, rng):
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    k = fft2c(x)
    np.testing.assert_allclose(ifft2c(k), x, atol=1e-12)
    # orthonormal: energy preserved
    assert np.isclose(np.linalg.norm(k), np.linalg.norm(x))


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (5, 6), (33, 17)])
def test_matches_numpy_reference_convention(shape, rng):
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x), norm="ortho"))
    np.testing.assert_allclose(fft2c(x), ref, atol=1e-12)
    refi = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x), norm="ortho"))
    np.testing.assert_allclose(ifft2c(x), refi, atol=1e-12)


@pytest.mark.parametrize("shape, dims", [((4, 6, 10), (0, 1, 2)), ((6, 7, 8), (0, 2)), ((3, 10, 5), (1,)),
                                         ((2, 12, 3, 6, 6), (-2, -1)), ((6, 4, 3), (-1, 0))])
def test_any_axes_match_the_rolled_reference(shape, dims, rng):
    """Even axes are transformed by sign modulation, odd ones by rolls: both are the convention
    (even lengths with n/2 odd and even, mixed with odd axes, leading and negative axes)."""
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    for ours, numpy_fft in ((fftc, np.fft.fftn), (ifftc, np.fft.ifftn)):
        ref = np.fft.fftshift(numpy_fft(np.fft.ifftshift(x, axes=dims), axes=dims, norm="ortho"), axes=dims)
        np.testing.assert_allclose(ours(x, dims=dims), ref, atol=1e-12)
        t = torch.from_numpy(x.astype(np.complex64))
        torch.testing.assert_close(ours(t, dims=dims), torch.from_numpy(ref.astype(np.complex64)),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n", [6, 7, 15, 16])
def test_dc_at_centre_index(n):
    """A constant image has all its energy at k = n // 2, odd or even."""
    k = fft2c(np.ones((n, n)))
    peak = np.unravel_index(np.argmax(np.abs(k)), k.shape)
    assert peak == (n // 2, n // 2)
    # and a centred delta gives a flat spectrum with zero phase
    d = np.zeros((n, n)); d[n // 2, n // 2] = 1
    np.testing.assert_allclose(fft2c(d), np.full((n, n), 1 / n), atol=1e-12)


def test_torch_and_numpy_agree_and_keep_type(rng):
    x = (rng.standard_normal((2, 3, 7, 10)) + 1j * rng.standard_normal((2, 3, 7, 10))).astype(np.complex64)
    kt = fft2c(torch.from_numpy(x))
    assert torch.is_tensor(kt) and kt.dtype == torch.complex64
    kn = fft2c(x)
    assert isinstance(kn, np.ndarray) and kn.dtype == np.complex64
    np.testing.assert_allclose(kt.numpy(), kn, atol=1e-5)


def test_single_axis_and_gradient(rng):
    x = torch.randn(4, 9, dtype=torch.complex64, requires_grad=True)
    y = fftc(x, dims=(-1,))
    np.testing.assert_allclose(ifftc(y, dims=(-1,)).detach().numpy(), x.detach().numpy(), atol=1e-5)
    y.abs().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_real_input_promoted():
    k = fft2c(np.ones((4, 4), dtype=np.float32))
    assert k.dtype == np.complex64


def test_remove_readout_oversampling_keeps_object(rng):
    ny, nx = 12, 10
    img = rng.standard_normal((ny, nx)) + 1j * rng.standard_normal((ny, nx))
    padded = np.zeros((ny, 2 * nx), complex)
    padded[:, nx // 2: nx // 2 + nx] = img
    k = fft2c(padded)
    k_rec = remove_readout_oversampling(k, nx)
    assert k_rec.shape == (ny, nx)
    np.testing.assert_allclose(ifft2c(k_rec), img, atol=1e-10)
    np.testing.assert_allclose(to_recon_grid(k, (nx, ny, 1)), k_rec)


@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
def test_readout_oversampling_of_undersampled_kspace_transforms_only_held_lines(rng, as_torch):
    """Lines never acquired (zeros) stay zeros; the held ones equal the whole-array transform's,
    for a cine [t, c, ky, kx] with an odd oversampled readout, numpy and torch."""
    t, c, ny, nx, rx = 3, 2, 8, 15, 7
    k = rng.standard_normal((t, c, ny, nx)) + 1j * rng.standard_normal((t, c, ny, nx))
    mask = rng.random((t, ny)) < 0.4
    mask[0, 0] = True
    k = (k * mask[:, None, :, None]).astype(np.complex64)
    whole = fftc(center_crop(ifftc(k, dims=(-1,)), (rx,), axes=(-1,)), dims=(-1,))
    got = remove_readout_oversampling(torch.from_numpy(k) if as_torch else k, rx)
    got = got.numpy() if as_torch else got
    assert got.shape == (t, c, ny, rx) and got.dtype == np.complex64
    np.testing.assert_allclose(got, whole, atol=1e-6)
    assert not np.any(got[~np.broadcast_to(mask[:, None, :], (t, c, ny))])
    full = remove_readout_oversampling(k + 1e-3, rx)  # every line held: the whole-array path
    np.testing.assert_allclose(full, fftc(center_crop(ifftc(k + 1e-3, dims=(-1,)), (rx,), axes=(-1,)), dims=(-1,)),
                               atol=1e-6)


@pytest.mark.parametrize("axis", [-2, -1, 0])
def test_alternating_signs_turn_a_centred_projection_into_plain_ffts(rng, axis):
    from recon.fft import alternating_signs

    v = torch.from_numpy(rng.standard_normal((6, 4, 8)) + 1j * rng.standard_normal((6, 4, 8)))
    n = v.shape[axis]
    shape = [1] * v.ndim
    shape[axis] = n
    m = torch.from_numpy(rng.random(n) < 0.5).to(torch.float64).reshape(shape)
    s = alternating_signs(n, torch.float64).reshape(shape)
    plain = s * torch.fft.ifft(m * torch.fft.fft(s * v, dim=axis, norm="ortho"), dim=axis, norm="ortho")
    torch.testing.assert_close(plain, ifftc(m * fftc(v, dims=(axis,)), dims=(axis,)))
    with pytest.raises(ValueError):
        alternating_signs(5)


def test_center_crop_rule():
    x = np.arange(9)
    np.testing.assert_array_equal(center_crop(x, (3,), axes=(-1,)), [3, 4, 5])
    np.testing.assert_array_equal(center_crop(np.arange(8), (4,), axes=(-1,)), [2, 3, 4, 5])


@pytest.mark.parametrize("ny,nx", [(4, 6), (6, 6), (4, 4), (2, 8)])
def test_centring_signs_turn_plain_ffts_into_centred_ones(ny, nx):
    x = torch.randn(3, ny, nx, dtype=torch.complex64)
    cs = centring_signs(ny, nx, torch.float32)
    s = cs * cs[0, 0]  # (-1)^(i + j); cs[0, 0] is the constant c
    torch.testing.assert_close(fft2c(x), cs * torch.fft.fft2(s * x, norm="ortho"))
    torch.testing.assert_close(ifft2c(x), cs * torch.fft.ifft2(s * x, norm="ortho"))
    with pytest.raises(ValueError, match="even"):
        centring_signs(5, 4, torch.float32)
