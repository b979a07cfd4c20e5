"""Noise of k-space: pre-whitening with a noise scan, and the noise level of a slice.

Pre-whitening (what Gadgetron's NoiseAdjustGadget does).

With noise samples ``n [c, N]`` the coil noise covariance is
``Psi = n n^H / (N - 1)``; the whitening matrix ``W = L^{-1}`` with
``Psi = L L^H`` (Cholesky) makes the noise of ``W y`` white with unit variance.
Gadgetron also scales by the ratio of dwell times and the receiver noise bandwidth
(``sqrt(2 * dwell_data * bandwidth / dwell_noise)``), which :func:`noise_scale`
computes; a uniform scale changes no reconstruction but keeps intensities
comparable with Gadgetron's own chains.

Noise level. The classical methods derive their regularisation from the per-coil
k-space noise std ``sigma`` (``sqrt(E|n|^2)`` of one complex sample, RMS over
coils): :func:`sigma_from_noise_scan` from a noise scan, :func:`whitened_sigma`
after the whitening above, :func:`estimate_sigma` from the calibration lines of the
data itself when there is no noise scan. With orthonormal FFTs, white noise keeps
its variance through readout-oversampling removal (a crop in image space), so the
value on the encoded grid is the value on the recon grid.
"""

from __future__ import annotations

import numpy as np

from recon.errors import InputError


def noise_covariance(noise: np.ndarray) -> np.ndarray:
    """Sample covariance ``[c, c]`` of noise samples ``[c, N]``."""
    noise = np.asarray(noise)
    if noise.ndim != 2 or noise.shape[1] < 2:
        raise InputError(f"noise samples must be [coils, samples] with >= 2 samples, got {noise.shape}")
    return (noise @ noise.conj().T) / (noise.shape[1] - 1)


def whitening_matrix(noise: np.ndarray) -> np.ndarray:
    """``W [c, c]`` (complex64) with ``W Psi W^H = I`` from noise samples ``[c, N]``."""
    psi = noise_covariance(noise)
    try:
        chol = np.linalg.cholesky(psi.astype(np.complex128))
    except np.linalg.LinAlgError:
        raise InputError("noise covariance is not positive definite (dead or duplicated channel?)") from None
    return np.linalg.inv(chol).astype(np.complex64)


def noise_scale(data_dwell_us: float, noise_dwell_us: float, bandwidth: float = 0.793) -> float:
    """Gadgetron's scale ``sqrt(2 * data dwell * receiver noise bandwidth / noise dwell)``."""
    if data_dwell_us <= 0 or noise_dwell_us <= 0:
        return 1.0
    return float(np.sqrt(2.0 * data_dwell_us * bandwidth / noise_dwell_us))


def whiten(data: np.ndarray, w: np.ndarray, coil_axis: int = 0) -> np.ndarray:
    """Apply ``W`` along ``coil_axis`` of ``data`` (e.g. ``[c, samples]`` or ``[t, c, ky, kx]``)."""
    moved = np.moveaxis(np.asarray(data), coil_axis, -1)
    if moved.shape[-1] != w.shape[0]:
        raise InputError(f"whitening matrix is for {w.shape[0]} coils, data has {moved.shape[-1]}")
    return np.moveaxis(moved @ w.T, -1, coil_axis).astype(np.complex64)


# ---------------------------------------------------------------------------
# Noise level of k-space: from a noise scan, or estimated from the data

#: Key of :attr:`recon.slicedata.SliceData.extra` holding the per-coil k-space noise
#: std (float) of the slice's data, set where a noise scan is known (file reader, chain).
NOISE_SIGMA_KEY = "noise_sigma"

#: Target number of columns ``c * ky * kx`` of the calibration matrix (kernel size rule).
CALIBRATION_COLUMNS = 400
#: Fewer columns for a quick estimate (:func:`recon.problem.weighting_noise_level`): the cost
#: grows with the cube of the columns (0.029 against 0.107 s a slice, 96 x 96, 6 frames, 4-24
#: coils, 1 thread) for a less exact estimate: estimate / true sigma 0.98-1.09 at SNR 3-30 as
#: with 400 columns, up to 1.25 at SNR 1,000 (400: 1.14) and 1.7 at SNR 10^4 (1.2).
QUICK_CALIBRATION_COLUMNS = 200
#: Rows of the calibration matrix per column (more rows only cost time).
ROWS_PER_COLUMN = 8
#: Quantile of the calibration matrix's eigenvalues matched to Marchenko-Pastur.
NOISE_QUANTILE = 0.1


def check_sigma(sigma: float, what: str = "noise sigma") -> float:
    """``sigma`` as a float; InputError unless finite and >= 0."""
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {sigma!r}") from None
    if not np.isfinite(value) or value < 0:
        raise InputError(f"{what} must be finite and >= 0, got {sigma!r}")
    return value


def sigma_from_noise_scan(noise: np.ndarray, noise_dwell_us: float = 0.0, data_dwell_us: float = 0.0) -> float:
    """Per-coil k-space noise std of the data, from noise samples ``[c, N]``.

    ``sqrt(trace(Psi) / c)``: the root mean over coils of the complex variance
    ``E|n_c|^2`` (the RMS of the per-coil stds). White receiver noise has a variance
    per sample proportional to the bandwidth ``1 / dwell``, so with both dwell times
    known (> 0) the noise-scan variance is scaled by ``noise_dwell / data_dwell``;
    otherwise the scan is taken to have the data's bandwidth.

    Raises InputError for non-finite samples or fewer than 2 samples.
    """
    noise = np.asarray(noise)
    if noise.ndim == 2 and not np.isfinite(noise).all():
        raise InputError("noise scan contains NaN or infinite samples")
    psi = noise_covariance(noise)
    variance = float(np.real(np.trace(psi))) / psi.shape[0]
    if noise_dwell_us > 0 and data_dwell_us > 0:
        variance *= noise_dwell_us / data_dwell_us
    return check_sigma(np.sqrt(max(variance, 0.0)), "noise-scan sigma")


def whitened_sigma(data_dwell_us: float, noise_dwell_us: float) -> float:
    """Per-coil k-space noise std after :func:`whiten` and the :func:`noise_scale` factor.

    Whitening leaves unit variance at the noise scan's bandwidth; the data's variance
    differs by ``noise_dwell / data_dwell`` (see :func:`sigma_from_noise_scan`), and the
    Gadgetron scale multiplies the std by :func:`noise_scale`: the result is
    ``sqrt(2 * bandwidth)`` when both dwell times are known, 1 otherwise.
    """
    ratio = noise_dwell_us / data_dwell_us if noise_dwell_us > 0 and data_dwell_us > 0 else 1.0
    return float(noise_scale(data_dwell_us, noise_dwell_us) * np.sqrt(ratio))


def calibration_block(mask: np.ndarray) -> np.ndarray:
    """ky indices ``[n]`` of the calibration block of a line mask ``[t, y]``.

    The longest run of consecutive lines sampled in every frame, preferring the
    run that holds the centre line ``y // 2`` (empty when no line is sampled in
    every frame).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise InputError(f"line mask must be [frames, lines], got shape {mask.shape}")
    common = np.flatnonzero(mask.all(axis=0))
    if len(common) == 0:
        return common
    runs = np.split(common, np.flatnonzero(np.diff(common) != 1) + 1)
    centre = [r for r in runs if r[0] <= mask.shape[1] // 2 <= r[-1]]
    return centre[0] if centre else max(runs, key=len)


def calibration_kernel(n_coils: int, n_lines: int, n_x: int,
                       columns: int = CALIBRATION_COLUMNS) -> tuple[int, int]:
    """Kernel ``(ky, kx)`` of the calibration matrix: ``c * k^2`` near ``columns``
    (:data:`CALIBRATION_COLUMNS`; k in 3..9), ky at most half the lines of the block.

    Enough columns that the signal (rank about ``(k + w - 1)^2`` for coil maps of
    k-space width ``w``) leaves most eigenvalues to the noise.
    """
    k = int(np.clip(round(np.sqrt(columns / max(n_coils, 1))), 3, 9))
    return max(1, min(k, n_lines // 2)), max(1, min(k, n_x // 2))


def calibration_matrix(block: np.ndarray, kernel: tuple[int, int], max_rows: int) -> np.ndarray:
    """Rows of k-space patches of a calibration block.

    Parameters
    ----------
    block : complex ``[t, c, n, x]``, calibration lines of every frame.
    kernel : patch size ``(ky, kx)``.
    max_rows : at most this many patches, evenly spaced over frames and positions.

    Returns
    -------
    complex128 ``[rows, c * ky * kx]``.
    """
    t, c, n, nx = block.shape
    ky, kx = kernel
    windows = np.lib.stride_tricks.sliding_window_view(block, (ky, kx), axis=(2, 3))  # [t, c, py, px, ky, kx]
    py, px = windows.shape[2:4]
    total = t * py * px
    pick = np.unique(np.linspace(0, total - 1, min(total, max_rows)).round().astype(np.int64))
    f, rest = np.divmod(pick, py * px)
    iy, ix = np.divmod(rest, px)
    rows = windows[f, :, iy, ix]  # [rows, c, ky, kx]
    return rows.reshape(len(pick), c * ky * kx).astype(np.complex128)


def marchenko_pastur_quantile(q: float, beta: float, n_grid: int = 4097) -> float:
    """Quantile ``q`` of the Marchenko-Pastur law of ratio ``beta`` in (0, 1] (unit variance).

    The eigenvalues of ``X^H X / M`` for ``X [M, N]`` of iid unit-variance entries,
    ``beta = N / M``, follow the density ``sqrt((b - x)(x - a)) / (2 pi beta x)`` on
    ``[a, b] = [(1 - sqrt(beta))^2, (1 + sqrt(beta))^2]``.
    """
    a, b = (1 - np.sqrt(beta)) ** 2, (1 + np.sqrt(beta)) ** 2
    # substitution x = a + (b - a) sin^2(u) removes the square-root end points
    u = np.linspace(0.0, np.pi / 2, n_grid)
    x = a + (b - a) * np.sin(u) ** 2
    dens = np.sqrt(np.clip((b - x) * (x - a), 0, None)) / (2 * np.pi * beta * np.maximum(x, 1e-300))
    integrand = dens * 2 * (b - a) * np.sin(u) * np.cos(u)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(u))])
    return float(np.interp(q, cdf / cdf[-1], x))


def _calibration_plan(mask: np.ndarray, n_coils: int, n_x: int, columns: int
                      ) -> tuple[np.ndarray, tuple[int, int], str | None]:
    """``(lines, kernel, why)`` of :func:`estimate_sigma` for a line mask ``[t, y]``: the calibration
    block, the kernel, and why no estimate is possible (None when it is), from the shapes alone: the
    block must hold at least 4 lines and its patches must outnumber the calibration matrix's columns."""
    lines = calibration_block(mask)
    kernel = calibration_kernel(n_coils, len(lines), n_x, columns)
    n_cols = n_coils * kernel[0] * kernel[1]
    patches = mask.shape[0] * max(len(lines) - kernel[0] + 1, 0) * max(n_x - kernel[1] + 1, 0)
    why = None
    if len(lines) < 4 or min(patches, ROWS_PER_COLUMN * n_cols) <= n_cols:
        why = (f"cannot estimate the noise level: {len(lines)} calibration lines (sampled in every "
               "frame) are too few; give the noise level or the regularisation explicitly")
    return lines, kernel, why


def noise_estimate_problem(mask, n_coils: int, n_x: int, columns: int = CALIBRATION_COLUMNS) -> str | None:
    """Why :func:`estimate_sigma` cannot estimate the noise level of data sampled with ``mask``
    (bool ``[t, y]``) on ``n_coils`` coils and ``n_x`` readout samples, or None when it can
    (from the shapes alone, no data read; the same check the estimate makes)."""
    m = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    return _calibration_plan(m, n_coils, n_x, columns)[2]


def estimate_sigma(kspace, mask, quantile: float = NOISE_QUANTILE, columns: int = CALIBRATION_COLUMNS) -> float:
    """Per-coil k-space noise std estimated from the calibration lines of the data.

    Every frame's calibration block (lines sampled in all frames) gives k-space
    patches of all coils; their calibration matrix ``A [M, N]`` (as in ESPIRiT) is
    the sum of a signal part of low rank (the coil maps are smooth, so multi-coil
    patches live in a subspace) and the noise. The eigenvalues of ``A^H A / M`` are
    then the signal's (few, large) and the noise's, which follow the
    Marchenko-Pastur law of ratio ``N / M`` scaled by ``sigma^2``. Signal only adds
    positive energy, so the lower quantile ``q`` of the eigenvalues is the least
    contaminated: ``sigma^2 = lambda_(q) / MP_quantile(q)``. Exactly equivariant to a
    global scale of the data. Coil-dependent noise levels give about the RMS over
    coils (slightly below it: the spread of the per-coil variances widens the
    eigenvalue law). A very low noise level is overestimated (signal leaks into the
    lowest eigenvalues), never by orders of magnitude. Measured on simulated cine
    (128 x 128, 12 frames, R = 8, phantom and two real series, 4-30 coils with
    per-coil variances in [0.7, 1.3] sigma^2): the ratio to the true RMS sigma is
    0.96-1.20 for SNR 3-1000 on the recon grid (0.96-1.07 with the readout
    oversampling kept), at most 1.5 at SNR 1e4 and 6.5 at SNR 1e5 (4 coils).

    The kernel (:func:`calibration_kernel`) keeps about ``columns`` columns;
    :data:`ROWS_PER_COLUMN` times as many rows are used (0.05-0.2 s per slice at the default
    :data:`CALIBRATION_COLUMNS`; :data:`QUICK_CALIBRATION_COLUMNS` for a quicker, rougher one).

    Parameters
    ----------
    kspace : complex ``[t, c, y, x]`` (numpy or torch), zeros where not sampled; any
        readout grid (with or without oversampling: the noise of white samples keeps
        its variance through the orthonormal crop).
    mask : bool ``[t, y]``, sampled lines.
    quantile : eigenvalue quantile matched to Marchenko-Pastur (in (0, 0.5]).
    columns : target number of calibration-matrix columns (the kernel size rule).

    Returns
    -------
    float, the per-coil k-space noise std (``sqrt(E|n|^2)``).

    Raises
    ------
    InputError : no calibration lines (too few lines sampled in every frame).
    """
    import torch

    k = kspace.detach().cpu().numpy() if hasattr(kspace, "detach") else np.asarray(kspace)
    m = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    if k.ndim != 4 or m.shape != (k.shape[0], k.shape[2]):
        raise InputError(f"k-space must be [t, c, y, x] with a mask [t, y], got {k.shape} and {m.shape}")
    if not 0 < quantile <= 0.5:
        raise InputError(f"quantile must lie in (0, 0.5], got {quantile}")
    lines, kernel, why = _calibration_plan(m, k.shape[1], k.shape[3], columns)
    if why is not None:
        raise InputError(why)
    a = calibration_matrix(k[:, :, lines], kernel, ROWS_PER_COLUMN * k.shape[1] * kernel[0] * kernel[1])
    n_cols = a.shape[1]
    if not np.isfinite(a).all():
        raise InputError("k-space contains NaN or infinite values")
    # the Gram matrix and its eigenvalues through torch: its threads (numpy's BLAS is kept to one,
    # recon.machine.limit_numpy_blas); 0.05 instead of 0.10 s on 2 threads, the same values to 1e-14
    rows = torch.from_numpy(a)
    eig = torch.linalg.eigvalsh(rows.mH @ rows).numpy() / a.shape[0]
    beta = min(1.0, n_cols / a.shape[0])
    value = np.quantile(np.clip(eig, 0, None), quantile) / marchenko_pastur_quantile(quantile, beta)
    return float(np.sqrt(value))


def calibration_inconsistency(kspace, mask, maps, margin: int = 4) -> float:
    """Per-coil std of what the SENSE model cannot explain in the calibration lines.

    The calibration block (lines sampled in every frame) gives low-resolution coil
    images ``I [t, c, y, x]``; their part orthogonal to the coil maps, ``R = I - S S^H I``,
    is what no image ``x`` can produce through ``S``: the noise (``c - 1`` of ``c``
    dimensions per pixel inside the maps' support, all ``c`` outside it) plus the model
    error (maps estimated from the same few lines, signal outside the maps' support,
    motion between frames). ``R`` is taken back to k-space and only the block's interior
    lines (``margin`` from each edge) are counted: multiplying by smooth maps spreads
    each line over a few neighbours, so at the block's edges the truncation of the
    block itself would pass for inconsistency. The energy per degree of freedom there is
    the variance of the inconsistency SENSE and L+S see in their data, whatever its
    source; for pure noise it is ``sigma^2`` (so it never needs the noise level).

    Without 2D FFTs: the block to image space by its rows of the centred DFT (after a 1D
    transform along x), the interior lines of ``R`` by theirs, their energy along x by Parseval;
    the value of the 2D-FFT form, 204 -> 89 ms on a demo slice (192 x 192, 20 frames, 15 coils).

    kspace : complex ``[t, c, y, x]`` (torch), zeros where not sampled; mask : bool
    ``[t, y]``; maps : complex ``[c, y, x]``, unit sum of squares or 0.
    Returns a float (the per-coil k-space std).
    """
    import torch

    from recon.coilops import expand, reduce
    from recon.fft import ifftc
    from recon.line_normal import centred_dft

    lines = calibration_block(mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask))
    inner = lines[margin:len(lines) - margin]
    if len(inner) < 2:
        raise InputError(f"too few calibration lines ({len(lines)}) to measure the model inconsistency")
    t, c, ny, nx = kspace.shape
    dft = centred_dft(ny, kspace.dtype, kspace.device)  # [ky, y]
    rows = torch.as_tensor(lines, dtype=torch.long, device=kspace.device)
    images = dft[rows].mH @ ifftc(kspace[:, :, rows], dims=(-1,))  # I [t, c, y, x]
    images = images - expand(reduce(images[None], maps[None]), maps[None])[0]  # R = I - S S^H I
    residual = dft[torch.as_tensor(inner, dtype=torch.long, device=kspace.device)] @ images  # [t, c, n, x]
    coverage = float(maps.abs().pow(2).sum(dim=0).mean())  # fraction of pixels in the support
    dof = t * len(inner) * nx * max(c - coverage, 1e-6)
    return float((residual.abs().square().sum() / dof).sqrt())


def signal_power(kspace, mask, sigma: float) -> float:
    """Mean image power per pixel ``mean |x|^2`` measured from the calibration lines.

    By Parseval (orthonormal FFT, coil maps of unit sum-of-squares) the energy of all
    coils' k-space equals the energy of the coil-combined image; the calibration
    block holds most of it. Its noise energy, ``t * c * lines * x * sigma^2``, is
    subtracted, and the rest divided by the pixels of all frames ``t * y * x``.

    kspace : complex ``[t, c, y, x]`` (numpy or torch); mask : bool ``[t, y]``;
    sigma : per-coil k-space noise std. Returns a float (<= 0 when the calibration
    lines hold no energy above the noise).
    """
    k = kspace.detach().cpu().numpy() if hasattr(kspace, "detach") else np.asarray(kspace)
    m = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    t, c, ny, nx = k.shape
    lines = calibration_block(m)
    if len(lines) == 0:
        raise InputError("cannot measure the signal power: no line is sampled in every frame")
    block = k[:, :, lines].astype(np.complex128)
    energy = float(np.sum(block.real ** 2 + block.imag ** 2))
    return (energy - t * c * len(lines) * nx * float(sigma) ** 2) / (t * ny * nx)


def outer_signal_power(kspace, mask, sigma: float) -> float:
    """Signal power per k-space location of the sampled lines outside the calibration block.

    ``mean over sampled (frame, line, x) outside the block of sum_c |k_c|^2``, minus the
    noise ``c sigma^2``: by Parseval the power of the image's spectrum there, in the units
    of :func:`signal_power` (whose mean over all of k-space is ``mean |x|^2``). These
    lines sample the outer k-space on a lattice, so this is also the power of the
    unsampled outer lines between them. Never below the standard error of the noise
    term, ``sqrt(c / n) sigma^2`` for ``n`` locations (outer k-space at the noise level).
    Without lines outside the block (fully sampled), :func:`signal_power`.

    kspace : complex ``[t, c, y, x]`` (numpy or torch); mask : bool ``[t, y]``;
    sigma : per-coil k-space noise std. Returns a float.
    """
    k = kspace.detach().cpu().numpy() if hasattr(kspace, "detach") else np.asarray(kspace)
    m = np.array(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask, dtype=bool)
    m[:, calibration_block(m)] = False
    if not m.any():
        return signal_power(k, mask, sigma)
    lines = np.moveaxis(k, 2, 1)[m].astype(np.complex128)  # [n_lines, c, x]
    n = lines.shape[0] * lines.shape[2]
    c = k.shape[1]
    power = float(np.sum(lines.real ** 2 + lines.imag ** 2)) / n - c * float(sigma) ** 2
    return max(power, np.sqrt(c / n) * float(sigma) ** 2)


def auto_or_number(value, name: str) -> float | None:
    """An option that is ``"auto"`` (returns None) or a number >= 0 (returns it as float).

    Raises InputError for anything else (negative, NaN, infinite, other text).
    """
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return None
        try:
            value = float(value)
        except ValueError:
            raise InputError(f"{name} must be 'auto' or a number >= 0, got '{value}'") from None
    if isinstance(value, bool):
        raise InputError(f"{name} must be 'auto' or a number >= 0, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be 'auto' or a number >= 0, got {value!r}") from None
    if not np.isfinite(number) or number < 0:
        raise InputError(f"{name} must be 'auto' or a finite number >= 0, got {value!r}")
    return number
