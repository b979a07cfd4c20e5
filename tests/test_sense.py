"""SENSE operators: adjointness, normal operator, data consistency, CG-SENSE."""

import pytest
import torch

from recon.errors import InputError
from recon.fft import fft2c
from recon.sense import (CGConsistency, DataConsistency, SenseOperator, cg_sense, data_consistency, data_consistency_kspace, expand,
                         expand_mask, noise_weight, reduce)


def _crandn(g, *shape, dtype=torch.complex128):
    return torch.complex(torch.randn(*shape, generator=g, dtype=torch.float64),
                         torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)


def _maps(g, b, c, ny, nx, dtype=torch.complex128):
    s = _crandn(g, b, c, ny, nx, dtype=dtype)
    return s / s.abs().pow(2).sum(1, keepdim=True).sqrt()  # unit sum of squares


def _line_mask(g, b, t, ny, p=0.4):
    m = torch.rand(b, t, ny, generator=g) < p
    m[..., ny // 2] = True
    return m


@pytest.mark.parametrize("b,t,c,ny,nx", [(1, 1, 1, 8, 8), (2, 3, 4, 7, 9), (1, 5, 3, 16, 11)])
@pytest.mark.parametrize("dtype,tol", [(torch.complex128, 1e-12), (torch.complex64, 1e-5)])
def test_adjointness(b, t, c, ny, nx, dtype, tol):
    g = torch.Generator().manual_seed(0)
    op = SenseOperator(_maps(g, b, c, ny, nx, dtype), _line_mask(g, b, t, ny))
    x = _crandn(g, b, t, ny, nx, dtype=dtype)
    y = _crandn(g, b, t, c, ny, nx, dtype=dtype)
    lhs = (op.forward(x).conj() * y).sum()
    rhs = (x.conj() * op.adjoint(y)).sum()
    assert abs(lhs - rhs) / abs(lhs) < tol
    # normal operator == adjoint(forward)
    torch.testing.assert_close(op.normal(x), op.adjoint(op.forward(x)))


@pytest.mark.parametrize("ny,nx", [(16, 12), (15, 9), (33, 8)])
@pytest.mark.parametrize("dtype,tol", [(torch.complex128, 1e-12), (torch.complex64, 1e-5)])
@pytest.mark.parametrize("form", ["rows", "columns"])
def test_normal_of_a_line_mask_is_the_fft_form(ny, nx, dtype, tol, form):
    """With a line mask the normal operator needs no FFT (recon.line_normal: the DFT's sampled rows,
    or one matrix per readout column): the same operator as ``adjoint(forward(x))``, on odd and even
    grids, with frames that sample different numbers of lines (one none), per-frame maps, maps shared
    by expansion, and a batch of two."""
    g = torch.Generator().manual_seed(3)
    b, t, c = 2, 4, 3
    mask = torch.zeros(b, t, ny, dtype=torch.bool)
    for i in range(b):
        for j in range(t - 1):
            mask[i, j, torch.randperm(ny, generator=g)[: 1 + (i + j) % (ny // 2)]] = True
    mask[1, 2] = mask[0, 1]  # two frames with the same lines (and, shared maps, one column group)
    one = _maps(g, 1, c, ny, nx, dtype)
    for maps in (_maps(g, b, c, ny, nx, dtype), _maps(g, b, c, ny, nx, dtype)[:, None].expand(b, t, c, ny, nx),
                 one.expand(b, c, ny, nx), _maps(g, b, c, ny, nx, dtype)[:, None].expand(b, t, c, ny, nx).clone()):
        op = SenseOperator(maps, mask, normal_form=form)
        x = _crandn(g, b, t, ny, nx, dtype=dtype)
        ref = op.adjoint(op.forward(x))
        assert op.normal_form_used == form
        assert float((op.normal(x) - ref).abs().max() / ref.abs().max()) < tol


def test_the_normal_form_is_chosen_by_cost_and_memory(monkeypatch):
    """``auto``: one matrix per column where the coils make it cheaper than the DFT rows
    (``y <= m c``), enough frames share each matrix to pay for streaming it (a shifted mask needs the
    rows) and its matrices fit the memory bound; the DFT rows with few coils; the FFTs
    where more than half the lines of a frame are sampled, for a 2D mask, and for images whose
    frames are not the mask's. Forcing a line form onto a 2D mask, or an unknown form, is an error."""
    import recon.line_normal as L

    g = torch.Generator().manual_seed(5)
    ny, nx, t = 32, 12, 28
    mask = torch.zeros(1, t, ny, dtype=torch.bool)
    mask[:, :, ::4] = True  # 8 lines a frame, the same in every frame: one column group
    assert SenseOperator(_maps(g, 1, 4, ny, nx), mask).normal_form_used == "columns"  # 32 <= 8 * 4
    assert SenseOperator(_maps(g, 1, 3, ny, nx), mask).normal_form_used == "rows"  # 32 > 8 * 3
    shifted = torch.zeros_like(mask)
    for f in range(t):
        shifted[0, f, f % 4 :: 4] = True  # 4 groups: streaming their matrices costs more than the rows
    assert L.COLUMN_STREAM * 4 * ny > t * 4 * 8 >= L.COLUMN_STREAM * 1 * ny
    assert SenseOperator(_maps(g, 1, 4, ny, nx), shifted).normal_form_used == "rows"
    assert SenseOperator(_maps(g, 1, 4, ny, nx), mask[:, :3]).normal_form_used == "rows"  # too few frames
    monkeypatch.setattr(L, "COLUMN_BYTES", nx * ny * ny * 8 - 1)  # one column group no longer fits
    assert SenseOperator(_maps(g, 1, 4, ny, nx), mask).normal_form_used == "rows"
    dense = mask.clone()
    dense[0, 0, : ny // 2 + 1] = True
    assert SenseOperator(_maps(g, 1, 3, ny, nx), dense).normal_form_used == "fft"
    two_d = mask[..., None].expand(1, t, ny, nx).clone()
    assert SenseOperator(_maps(g, 1, 4, ny, nx), two_d).normal_form_used == "fft"
    assert SenseOperator(_maps(g, 1, 4, ny, nx), mask, normal_form="fft").normal_form_used == "fft"
    op = SenseOperator(_maps(g, 1, 4, ny, nx), mask, normal_form="columns")
    x = _crandn(g, 1, 1, ny, nx)  # one frame against a mask of three: broadcast, the FFTs
    torch.testing.assert_close(op.normal(x), op.adjoint(op.forward(x)))
    single = SenseOperator(_maps(g, 1, 4, ny, nx, torch.complex64), mask)
    x = _crandn(g, 1, t, ny, nx)  # double-precision images, single-precision maps: the FFTs, no rounding down
    assert single.normal(x).dtype == torch.complex128
    torch.testing.assert_close(single.normal(x), single.adjoint(single.forward(x)))
    with pytest.raises(InputError, match="line mask"):
        SenseOperator(_maps(g, 1, 4, ny, nx), two_d, normal_form="columns")
    with pytest.raises(InputError, match="normal_form"):
        SenseOperator(_maps(g, 1, 4, ny, nx), mask, normal_form="dft")


def test_time_varying_maps_and_2d_mask():
    g = torch.Generator().manual_seed(1)
    maps = _crandn(g, 2, 3, 4, 6, 5)
    mask = torch.rand(2, 3, 6, 5, generator=g) > 0.5
    op = SenseOperator(maps, mask)
    x, y = _crandn(g, 2, 3, 6, 5), _crandn(g, 2, 3, 4, 6, 5)
    lhs = (op.forward(x).conj() * y).sum()
    assert abs(lhs - (x.conj() * op.adjoint(y)).sum()) / abs(lhs) < 1e-12


def test_expand_reduce_identity_with_unit_maps():
    g = torch.Generator().manual_seed(2)
    maps = _maps(g, 1, 4, 8, 8)
    x = _crandn(g, 1, 2, 8, 8)
    torch.testing.assert_close(reduce(expand(x, maps), maps), x)


def test_data_consistency_keeps_measured_samples():
    g = torch.Generator().manual_seed(3)
    maps = _maps(g, 1, 1, 9, 8)  # single coil of unit modulus: S^H S = 1 exactly
    mask = _line_mask(g, 1, 2, 9)
    truth = _crandn(g, 1, 2, 9, 8)
    k0 = expand_mask(mask) * fft2c(expand(truth, maps))
    x = _crandn(g, 1, 2, 9, 8)
    x_dc = data_consistency(x, k0, maps, mask)
    k_dc = fft2c(expand(x_dc, maps))
    m = expand_mask(mask).bool().expand_as(k_dc)
    torch.testing.assert_close(k_dc[m], k0[m])
    # unsampled locations keep the estimate's k-space
    k_x = fft2c(expand(x, maps))
    torch.testing.assert_close(k_dc[~m], k_x[~m])
    # k-space version
    kk = data_consistency_kspace(k_x, k0, mask)
    torch.testing.assert_close(kk[m], k0[m])


def test_cg_sense_recovers_truth():
    g = torch.Generator().manual_seed(4)
    b, t, c, ny, nx = 2, 2, 8, 24, 20
    # smooth maps so that R=2 is well conditioned
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, ny), torch.linspace(-1, 1, nx), indexing="ij")
    maps = torch.stack([torch.exp(1j * (k * yy + (k % 3) * xx)) * (1.2 + torch.cos(yy * (k + 1) + xx))
                        for k in range(c)]).to(torch.complex128)
    maps = (maps / maps.abs().pow(2).sum(0).sqrt())[None].repeat(b, 1, 1, 1)
    mask = torch.zeros(b, t, ny, dtype=torch.bool)
    mask[..., ::2] = True
    truth = _crandn(g, b, t, ny, nx)
    op = SenseOperator(maps, mask)
    k = op.forward(truth)
    seen = []
    x = cg_sense(k, maps, mask, n_iter=100, tol=1e-10, callback=lambda i, x: seen.append(i))
    assert seen, "callback called"
    err = (x - truth).norm() / truth.norm()
    assert err < 1e-6
    # zero-filled (adjoint) is far from the truth
    assert (op.adjoint(k) - truth).norm() / truth.norm() > 0.3


@pytest.mark.parametrize("nx", [5, 4])  # odd: centred FFTs; even: the signs folded into the maps
def test_cg_consistency_is_the_regularised_least_squares_solution(nx):
    """MoDL's step: ``argmin ||A x - k||^2 + lam ||x - z||^2`` from the normal equations, solved
    densely; lam -> inf keeps z, a different lam per sample; gradients reach z and lam."""
    g = torch.Generator().manual_seed(11)
    b, t, c, ny = 2, 2, 3, 6
    maps, mask = _maps(g, b, c, ny, nx), _line_mask(g, b, t, ny)
    op = SenseOperator(maps, mask)
    k = op.forward(_crandn(g, b, t, ny, nx)) + expand_mask(mask) * _crandn(g, b, t, c, ny, nx) * 0.1
    z = _crandn(g, b, t, ny, nx)
    lam = torch.tensor([0.05, 2.0], dtype=torch.float64)
    n = t * ny * nx
    eye = torch.eye(n, dtype=torch.complex128)
    normal = torch.stack([_normal_columns(op, i, b, t, ny, nx) for i in range(b)])
    rhs = op.adjoint(k).reshape(b, n) + lam[:, None] * z.reshape(b, n)
    exact = torch.linalg.solve(normal + lam[:, None, None] * eye, rhs).reshape(b, t, ny, nx)
    torch.testing.assert_close(CGConsistency(k, maps, mask, iterations=2 * n)(z, lam), exact)
    torch.testing.assert_close(CGConsistency(k, maps, mask, iterations=3)(z, 1e12), z)
    zg, lg = z.clone().requires_grad_(), lam.clone().requires_grad_()
    CGConsistency(k, maps, mask, iterations=3)(zg, lg).abs().sum().backward()
    assert zg.grad.abs().sum() > 0 and (lg.grad != 0).all()
    with pytest.raises(InputError, match="iteration"):
        CGConsistency(k, maps, mask, iterations=0)


def _normal_columns(op, i, b, t, ny, nx):
    """``A^H A`` of batch sample ``i`` as a dense ``[n, n]`` matrix (``n = t ny nx``)."""
    n = t * ny * nx
    basis = torch.eye(n, dtype=torch.complex128).reshape(n, t, ny, nx)
    cols = []
    for j in range(n):
        x = torch.zeros(b, t, ny, nx, dtype=torch.complex128)
        x[i] = basis[j]
        cols.append(op.normal(x)[i].reshape(n))
    return torch.stack(cols, dim=1)


def test_cg_with_tikhonov_shrinks():
    g = torch.Generator().manual_seed(5)
    maps, mask = _maps(g, 1, 2, 8, 8), _line_mask(g, 1, 1, 8)
    k = SenseOperator(maps, mask).forward(_crandn(g, 1, 1, 8, 8))
    x0 = cg_sense(k, maps, mask, lam=0.0, n_iter=30)
    x1 = cg_sense(k, maps, mask, lam=10.0, n_iter=30)
    assert x1.norm() < x0.norm()
    with pytest.raises(InputError):
        cg_sense(k, maps, mask, lam=-1)


@pytest.mark.parametrize("nx", [5, 4])
def test_cg_sense_with_per_pixel_weights_solves_the_weighted_normal_equations(nx):
    """``lam`` as per-pixel weights ``[y, x]``: the solution of ``(A^H A + diag(lam)) x = A^H k``
    (dense solve), the same as the scalar weight where they are uniform; bad weights named."""
    g = torch.Generator().manual_seed(12)
    b, t, c, ny = 1, 2, 3, 7
    maps, mask = _maps(g, b, c, ny, nx), _line_mask(g, b, t, ny)
    op = SenseOperator(maps, mask)
    k = op.forward(_crandn(g, b, t, ny, nx)) + expand_mask(mask) * _crandn(g, b, t, c, ny, nx) * 0.1
    lam = torch.rand(ny, nx, generator=g, dtype=torch.float64) * 2
    n = t * ny * nx
    weights = torch.diag(lam.expand(t, ny, nx).reshape(n).to(torch.complex128))
    exact = torch.linalg.solve(_normal_columns(op, 0, b, t, ny, nx) + weights,
                               op.adjoint(k).reshape(n)).reshape(b, t, ny, nx)
    torch.testing.assert_close(cg_sense(k, maps, mask, lam=lam, n_iter=4 * n, tol=1e-14), exact)
    torch.testing.assert_close(cg_sense(k, maps, mask, lam=torch.full((ny, nx), 0.3, dtype=torch.float64), n_iter=20),
                               cg_sense(k, maps, mask, lam=0.3, n_iter=20))
    for bad in (-lam, lam * float("nan"), lam.to(torch.complex128)):
        with pytest.raises(InputError, match="per-pixel lam"):
            cg_sense(k, maps, mask, lam=bad)


def test_bad_shapes():
    with pytest.raises(InputError):
        expand_mask(torch.ones(3, 3))
    with pytest.raises(InputError):
        SenseOperator(torch.ones(2, 3, dtype=torch.complex64), torch.ones(1, 1, 3))


@pytest.mark.parametrize("ny,nx", [(8, 6), (10, 6), (6, 10), (10, 10), (9, 6), (8, 7), (7, 5)])
def test_data_consistency_with_folded_signs_equals_the_centred_one(ny, nx):
    """DataConsistency folds the centred FFT's signs into maps and data on even grids (both
    sign constants c = +1 and -1 occur above); values and gradients equal data_consistency."""
    g = torch.Generator().manual_seed(ny * 10 + nx)
    cr = lambda *s: torch.complex(torch.randn(*s, generator=g), torch.randn(*s, generator=g))  # noqa: E731
    maps = cr(2, 3, ny, nx)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.rand(2, 4, ny, generator=g) < 0.5
    k0 = cr(2, 4, 3, ny, nx) * mask[:, :, None, :, None]
    x = cr(2, 4, ny, nx).requires_grad_()
    dc = DataConsistency(k0, maps, mask, normal_form="fft")  # the FFT form (the column form: test above)
    assert dc.folded == (ny % 2 == 0 and nx % 2 == 0)
    a, b = data_consistency(x, k0, maps, mask), dc(x)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    w = cr(2, 4, ny, nx)
    (ga,) = torch.autograd.grad((a.conj() * w).real.sum(), x)
    (gb,) = torch.autograd.grad((b.conj() * w).real.sum(), x)
    torch.testing.assert_close(gb, ga, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ny,nx", [(12, 8), (11, 7)])
def test_data_consistency_without_ffts_equals_the_fft_form(ny, nx, monkeypatch):
    """With the column form of A^H A, DataConsistency computes ``P x - w A^H A x + w A^H k0``
    with no FFT: the same step as the FFT form, hard and weighted per sample, with per-frame maps
    and a batch whose samples have other lines; a weight varying over k-space keeps the FFTs;
    gradients flow to the images alike."""
    import recon.line_normal as L

    monkeypatch.setattr(L, "COLUMN_STREAM", 0)  # these few frames all have their own lines: force the columns
    g = torch.Generator().manual_seed(ny)
    b, t, c = 2, 3, 4
    mask = torch.rand(b, t, ny, generator=g) < 0.4
    mask[..., ny // 2] = True
    for maps in (_maps(g, b, c, ny, nx), _maps(g, b, c, ny, nx)[:, None].expand(b, t, c, ny, nx).clone()):
        k0 = expand_mask(mask) * _crandn(g, b, t, c, ny, nx)
        fast, slow = DataConsistency(k0, maps, mask), DataConsistency(k0, maps, mask, normal_form="fft")
        assert fast.columns is not None and slow.columns is None
        x = _crandn(g, b, t, ny, nx).requires_grad_()
        w = torch.tensor([0.3, 0.9], dtype=torch.float64).view(-1, 1, 1, 1, 1)
        per_pixel = torch.rand(b, t, 1, ny, 1, generator=g, dtype=torch.float64)
        for weight in (None, w, per_pixel):
            a, z = fast(x, weight), slow(x, weight)
            torch.testing.assert_close(a, z, rtol=1e-10, atol=1e-10)
        (ga,) = torch.autograd.grad(fast(x, w).abs().sum(), x)
        (gz,) = torch.autograd.grad(slow(x, w).abs().sum(), x)
        torch.testing.assert_close(ga, gz, rtol=1e-10, atol=1e-10)
    with pytest.raises(InputError, match="normal_form"):
        DataConsistency(k0, maps, mask, normal_form="rows")


@pytest.mark.parametrize("ny, nx", [(9, 8), (10, 8)])  # odd: the centred path; even: the folded one
def test_weighted_data_consistency_mixes_measurement_and_estimate(ny, nx):
    """Weight w: sampled k-space becomes (1 - w) estimate + w measurement, unsampled keeps the
    estimate; w = 1 is the hard replacement; noise_weight is tau^2 / (tau^2 + sigma^2)."""
    g = torch.Generator().manual_seed(5)
    maps = _maps(g, 2, 1, ny, nx)  # single coil of unit modulus: S^H S = 1 exactly
    mask = _line_mask(g, 2, 3, ny)
    k0 = expand_mask(mask) * fft2c(expand(_crandn(g, 2, 3, ny, nx), maps))
    x = _crandn(g, 2, 3, ny, nx)
    w = torch.tensor([0.25, 1.0], dtype=torch.float64).view(-1, 1, 1, 1, 1)
    out = DataConsistency(k0, maps, mask)(x, w)
    k_out, k_x = fft2c(expand(out, maps)), fft2c(expand(x, maps))
    m = expand_mask(mask).bool().expand_as(k_out)
    expected = torch.where(m, (1 - w) * k_x + w * k0, k_x)
    torch.testing.assert_close(k_out, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[1:], DataConsistency(k0, maps, mask)(x)[1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, data_consistency(x, k0, maps, mask, w), rtol=1e-4, atol=1e-5)
    tau, sigma = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0])
    torch.testing.assert_close(noise_weight(tau, sigma), torch.tensor([1.0, 0.5]))


def _shifted_lines(t, ny, r, shifted=True, centre=True):
    """``[1, t, ny]`` bool: every ``r``-th line, moved one line per frame (or not), and the centre
    line in every frame (unless ``centre`` is False)."""
    mask = torch.zeros(1, t, ny, dtype=torch.bool)
    for i in range(t):
        mask[0, i, (i % r if shifted else 0)::r] = True
    if centre:
        mask[0, :, ny // 2] = True
    return mask


@pytest.mark.parametrize("ny,nx", [(12, 10), (11, 9)])
def test_temporal_mean_consistency_gives_a_static_object_its_mean_and_keeps_the_differences(ny, nx):
    """A static object on a mask that moves one line per frame (each line sampled by one frame, the
    union every line, so ``A^H A = S^H S = I`` there): the zero-filled frames get the object as their
    mean; each frame's difference from the mean is kept."""
    from recon.sense import TemporalMeanConsistency

    g = torch.Generator().manual_seed(3)
    t, c = 4, 3
    maps = _maps(g, 1, c, ny, nx, dtype=torch.complex64)
    image = _crandn(g, 1, 1, ny, nx, dtype=torch.complex64).expand(1, t, ny, nx)
    mask = _shifted_lines(t, ny, 4, centre=False)
    k = SenseOperator(maps, mask).forward(image)
    x = SenseOperator(maps, mask).adjoint(k)  # zero-filled frames: the wrong mean
    out = TemporalMeanConsistency(k, maps, mask)(x)
    torch.testing.assert_close(out.mean(1), image[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out - out.mean(1, keepdim=True), x - x.mean(1, keepdim=True), atol=1e-5, rtol=1e-5)


def test_temporal_mean_consistency_leaves_lines_every_frame_sampled_to_data_consistency():
    """A moving object: on a fixed mask nothing changes (bit for bit); on a moving lattice with a
    line every frame samples, that line and every frame's difference from the mean are kept while
    the other sampled lines get the measured mean (one coil of unit modulus: the k-space statements
    are exact). Weight 0: nothing moves; ``weight`` uses the mean's noise, ``sigma / sqrt(frames
    that sampled the line)``."""
    from recon.sense import TemporalMeanConsistency

    g = torch.Generator().manual_seed(4)
    t, c, ny, nx = 6, 1, 12, 8
    maps = _maps(g, 1, c, ny, nx, dtype=torch.complex64)
    truth = _crandn(g, 1, t, ny, nx, dtype=torch.complex64)
    x = truth + 0.3 * _crandn(g, 1, 1, ny, nx, dtype=torch.complex64)  # every frame off by the same error
    fixed = _shifted_lines(t, ny, 3, shifted=False)
    assert torch.equal(TemporalMeanConsistency(SenseOperator(maps, fixed).forward(truth), maps, fixed)(x), x)

    mask = _shifted_lines(t, ny, 3)
    k = SenseOperator(maps, mask).forward(truth)
    tmc = TemporalMeanConsistency(k, maps, mask)
    out = tmc(x)
    full = SenseOperator(maps, torch.ones(1, t, ny))
    k_out, k_x = full.forward(out), full.forward(x)
    some = mask[0].any(0) & ~mask[0].all(0)
    assert some.sum() == ny - 1 and tmc.lines[0].tolist() == some.tolist()
    mean_sampled = (k * mask[:, :, None, :, None]).sum(1) / mask.sum(1)[:, None, :, None]
    torch.testing.assert_close(k_out.mean(1)[..., some, :], mean_sampled[..., some, :], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k_out[..., ~some, :], k_x[..., ~some, :], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out - out.mean(1, keepdim=True), x - x.mean(1, keepdim=True), atol=1e-5, rtol=1e-5)
    w = tmc.weight(torch.tensor(1.0), torch.tensor([2.0]).view(1, 1, 1, 1, 1))
    assert w.shape == (1, 1, 1, ny, 1)
    torch.testing.assert_close(w[0, 0, 0, some, 0], torch.full((ny - 1,), 1 / (1 + 4 / 2)))  # 2 of 6 frames
    torch.testing.assert_close(tmc(x, torch.zeros_like(w)), x)


def test_temporal_mean_consistency_needs_one_set_of_maps():
    from recon.sense import TemporalMeanConsistency

    k = torch.zeros(1, 2, 3, 8, 8, dtype=torch.complex64)
    with pytest.raises(InputError, match=r"one set of maps \[b, c, y, x\]"):
        TemporalMeanConsistency(k, torch.ones(1, 2, 3, 8, 8, dtype=torch.complex64), torch.ones(1, 2, 8))
