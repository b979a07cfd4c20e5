"""Receive coil sensitivities from Biot-Savart (the coil families of the simulator).

The array is a set of circular surface loops placed on an ellipse a little
outside the body (anterior and posterior arrays, one or more rings along the
slice axis z, neighbouring rings staggered in angle), each loop's normal pointing
into the body. The field of a unit current in each loop is integrated numerically
(Biot-Savart over straight segments) at the pixel positions of the imaging plane
z = 0, and the sensitivity is its transverse component

    S_c(y, x) = B_x - i B_y,

with x along the image columns, y along the image rows (pointing down) and z the
slice normal (the counter-rotating B1^- component by reciprocity, up to a global
conjugation that depends on the sense of precession). A random constant phase per
channel (cables and receivers) is applied on top.

Coil families (``family``), what a scanner's arrays vary:

* ``wrap``: anterior and posterior arrays of equal size, each spanning +-70 degrees
  of the body ellipse (a torso array wrapped around the chest);
* ``ring``: loops evenly spaced all around the body (birdcage-like coverage);
* ``front_back``: an asymmetric pair, the posterior (spine) array holding most of the
  elements, each array with its own angular span and distance from the body;
* ``irregular``: loops of unequal size at irregular angles on one array covering 216-360
  degrees of a body outline displaced by up to 10 % of its axes, each loop up to 40 mm
  above or below the imaging plane (a flexible array placed by hand on a patient lying
  off-centre);
* ``dipole``: not loops at all, each element modelled as a point magnetic dipole at an
  irregular position around a displaced body outline (a different physical model,
  kept out of training to validate on an acquisition family the networks never saw);
* ``bart``: not ours at all: BART's simulated sensitivities (``bart phantom -S``, at most
  8 coils; needs the ``bart`` command), its field of view stretched onto the body ellipse
  (its phantom's outline onto the body's), for validating on a coil model another
  project wrote (``crunet validate --heldout-coils bart:8``).

Loop size (``radius_scale``) and the wire's distance from the body (``standoff_mm``)
are parameters too. :func:`coil_maps` simulates on a coarse grid and interpolates
(the fields are smooth), which is what the simulator and the training data use.
The receivers' noise (covariance and correlated noise) is :mod:`recon.simulate.coil_noise`.
"""

from __future__ import annotations

import numpy as np

from recon.checks import check_count
from recon.errors import InputError

_N_SEGMENTS = 64
_WIRE_MM = 5.0  # conductor half-width: regularises the field next to the wire
_STANDOFF_MM = 10.0  # the wires run this far outside the body surface
_ARRAY_HALF_SPAN_DEG = 70.0  # anterior / posterior arrays cover +-70 degrees

#: Coil families of :func:`coil_sensitivities` (see the module docstring).
COIL_FAMILIES = ("wrap", "ring", "front_back", "irregular", "dipole", "bart")
#: The most elements a family has, where it is limited (``bart``: BART's model).
FAMILY_MAX_COILS = {"bart": 8}


def check_family_coils(family: str, n_coils: int, suggest: bool = False) -> None:
    """InputError when ``family`` has fewer elements than ``n_coils`` (:data:`FAMILY_MAX_COILS`);
    ``suggest``: the message names the ``crunet validate --heldout-coils`` that fits."""
    most = FAMILY_MAX_COILS.get(family)
    if most is not None and int(n_coils) > most:
        raise InputError(f"the {family!r} coil family has at most {most} coils, got {n_coils}"
                         + (f" (e.g. --heldout-coils {family}:{most})" if suggest else ""))


#: Semi-axes (y, x) of BART's phantom in half fields of view of its sensitivity grid, in our
#: layout (:func:`recon.coils.bart_io.bart_to_images`; ``bart phantom -x 64``: rows 10-54,
#: columns 3-61): the body ellipse maps onto them.
_BART_BODY = (0.70, 0.92)
#: BART sensitivity grid (they are smooth; interpolated to the pixels).
_BART_GRID = 64

#: Placement jitter of the loop families: (angle in radians, angle in element spacings -- the
#: two add --, loop radius relative, z of the loop centre in mm, body-centre shift relative).
_JITTER = {"irregular": (0.0, 0.35, 0.25, 40.0, 0.1)}
_REGULAR_JITTER = (0.05, 0.0, 0.05, 5.0, 0.0)


def _check_pair(name: str, value: tuple[float, float], integer: bool = False) -> tuple[float, float]:
    try:
        pair = tuple(value)
    except TypeError:
        raise InputError(f"{name} must be a pair (y, x), got {value!r}") from None
    if len(pair) != 2:
        raise InputError(f"{name} must be a pair (y, x), got {value!r}")
    if integer:
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in pair):
            raise InputError(f"{name} must hold two integers >= 1, got {value!r}")
        return (int(pair[0]), int(pair[1]))
    try:
        out = (float(pair[0]), float(pair[1]))
    except (TypeError, ValueError):
        raise InputError(f"{name} must hold two numbers, got {value!r}") from None
    if not all(np.isfinite(v) and v > 0 for v in out):
        raise InputError(f"{name} must hold two finite numbers > 0, got {value!r}")
    return out


def _arrays(family: str, g: np.random.Generator) -> list[tuple[float, float, float]]:
    """``(centre angle, half span, share of the elements)`` of each array of a loop family.

    ``wrap`` is fixed (the historical layout); ``front_back`` draws its spans and the
    posterior share from ``g``.
    """
    if family == "wrap":
        h = np.deg2rad(_ARRAY_HALF_SPAN_DEG)
        return [(1.5 * np.pi, h, 0.5), (0.5 * np.pi, h, 0.5)]
    if family == "ring":
        return [(0.5 * np.pi, np.pi, 1.0)]
    if family == "irregular":
        return [(g.uniform(0, 2 * np.pi), g.uniform(0.6 * np.pi, np.pi), 1.0)]
    if family == "front_back":
        post = g.uniform(0.55, 0.75)
        return [(1.5 * np.pi, np.deg2rad(g.uniform(40, 75)), 1 - post),
                (0.5 * np.pi, np.deg2rad(g.uniform(45, 80)), post)]
    raise InputError(f"unknown coil family {family!r}; known: {', '.join(COIL_FAMILIES)}")


def _split(n: int, shares: list[float], offset: int) -> list[int]:
    """``n`` elements split over arrays in proportion to ``shares`` (each array >= 0);
    ``offset`` rotates which array gets the rounding remainder (rings alternate)."""
    raw = np.asarray(shares) * n
    counts = np.floor(raw).astype(int)
    order = np.roll(np.argsort(-(raw - counts), kind="stable"), offset)
    for i in order[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _loop_layout(
    n_coils: int, n_rings: int, body: tuple[float, float], g: np.random.Generator,
    family: str = "wrap", standoff_mm: float = _STANDOFF_MM, radius_scale: float = 1.0,
) -> list[np.ndarray]:
    """Wire polygons [segments + 1, 3] (x, y, z in mm) of every loop.

    Each loop is a circle drawn on the cylinder over the stand-off ellipse (a
    flexible array wrapped around the torso): arc length along the ellipse and
    z are its two coordinates. The arrays of ``family`` (:func:`_arrays`) share the
    elements of each ring; loops are sized to tile their array (``radius_scale``
    times that, within 40-80 mm before scaling). Each loop's angle, radius and z are
    jittered (:data:`_JITTER`; the regular families by a few per cent and mm).
    """
    by, bx = body[0] + standoff_mm, body[1] + standoff_mm
    angle_rad, angle_spacings, radius_jitter, z_jitter, shift = _JITTER.get(family, _REGULAR_JITTER)
    cy, cx = (g.uniform(-shift, shift, 2) * body) if shift else (0.0, 0.0)
    fine = np.linspace(-np.pi, 3 * np.pi, 8193)  # two turns, so arcs never wrap
    ex, ey = bx * np.cos(fine), by * np.sin(fine)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(ex), np.diff(ey)))])
    arc_at = lambda phi: np.interp(phi, fine, arc)  # noqa: E731

    arrays = _arrays(family, g)
    per_ring = [n_coils // n_rings + (r < n_coils % n_rings) for r in range(n_rings)]
    # loop size: the densest array of the fullest ring sets it
    sizes = []
    for (centre, half, _), n_array in zip(arrays, _split(max(per_ring), [a[2] for a in arrays], 0)):
        if n_array:
            sizes.append((arc_at(centre + half) - arc_at(centre - half)) / n_array)
    radius = float(np.clip(0.55 * min(sizes), 40.0, 80.0)) * radius_scale
    dz = 1.5 * radius
    psi = np.linspace(0.0, 2 * np.pi, _N_SEGMENTS + 1)
    loops = []
    for r, n_ring in enumerate(per_ring):
        z = (r - 0.5 * (n_rings - 1)) * dz
        # alternate which array gets the odd coil
        counts = _split(n_ring, [a[2] for a in arrays], 0 if r % 2 == 0 else 1)
        for (centre_angle, half_span, _), n_array in zip(arrays, counts):
            if n_array == 0:
                continue
            spacing = 2 * half_span / n_array
            stagger = spacing * (r / n_rings - 0.5 * (n_rings - 1) / n_rings)
            jitter = angle_rad + angle_spacings * spacing
            for k in range(n_array):
                phi = centre_angle - half_span + spacing * (k + 0.5) + stagger + g.uniform(-jitter, jitter)
                rad = radius * g.uniform(1 - radius_jitter, 1 + radius_jitter)
                s = arc_at(phi) + rad * np.sin(psi)
                wire_phi = np.interp(s, arc, fine)
                wire = np.stack(
                    [cx + bx * np.cos(wire_phi), cy + by * np.sin(wire_phi),
                     z + g.uniform(-z_jitter, z_jitter) + rad * np.cos(psi)],
                    axis=1,
                )
                loops.append(wire)
    return loops


def _dipole_maps(n_coils: int, px: np.ndarray, py: np.ndarray, body: tuple[float, float],
                 standoff_mm: float, g: np.random.Generator) -> np.ndarray:
    """Transverse fields ``B_x - i B_y`` ``[c, n]`` of point magnetic dipoles (the ``dipole`` family).

    Element ``c`` sits at an irregular angle on an ellipse ``standoff_mm`` outside a
    body outline displaced by up to 10 % of its axes, 20-90 mm above or below the
    imaging plane, its moment pointing roughly at the body centre with a random tilt
    (z component included). ``B = (3 r (m . r) / |r|^2 - m) / |r|^3`` with ``r`` from the
    dipole to the pixel.
    """
    by, bx = body[0] + standoff_mm, body[1] + standoff_mm
    cy, cx = g.uniform(-0.1, 0.1) * body[0], g.uniform(-0.1, 0.1) * body[1]
    angles = np.sort((np.arange(n_coils) + g.uniform(-0.35, 0.35, n_coils)) * 2 * np.pi / n_coils
                     + g.uniform(0, 2 * np.pi))
    out = np.empty((n_coils, px.size), dtype=np.complex128)
    for c, a in enumerate(angles):
        pos = np.array([cx + bx * np.cos(a), cy + by * np.sin(a), g.choice([-1, 1]) * g.uniform(20, 90)])
        inward = np.array([cx, cy, 0.0]) - pos
        m = inward / np.linalg.norm(inward) + g.normal(scale=0.4, size=3)
        m /= np.linalg.norm(m)
        r = np.stack([px - pos[0], py - pos[1], -pos[2] * np.ones_like(px)], axis=0)  # [3, n]
        d2 = (r * r).sum(0) + _WIRE_MM**2
        mr = (m[:, None] * r).sum(0)
        b = (3 * r * mr / d2 - m[:, None]) / d2**1.5
        out[c] = b[0] - 1j * b[1]
    return out


def _bart_maps(n_coils: int, px: np.ndarray, py: np.ndarray, body: tuple[float, float]) -> np.ndarray:
    """BART's sensitivities ``[c, n]`` at the pixel positions (the ``bart`` family): its grid's
    phantom outline (:data:`_BART_BODY`) stretched onto the body ellipse, cubic interpolation,
    the edge values beyond the grid."""
    from scipy.ndimage import map_coordinates

    from recon.coils.bart_io import bart_sensitivities

    grid = bart_sensitivities(n_coils, _BART_GRID)  # [c, g, g]
    half = _BART_GRID / 2
    coords = np.stack([py / body[0] * _BART_BODY[0] * half + half, px / body[1] * _BART_BODY[1] * half + half])
    out = np.empty((n_coils, px.size), dtype=np.complex128)
    for c in range(n_coils):
        out[c] = (map_coordinates(grid[c].real, coords, order=3, mode="nearest")
                  + 1j * map_coordinates(grid[c].imag, coords, order=3, mode="nearest"))
    return out


def _loop_field(px: np.ndarray, py: np.ndarray, wire: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transverse Biot-Savart field (B_x, B_y), arbitrary units, of a unit current
    along the closed polygon ``wire`` [s + 1, 3] at points (px, py, 0), each [n]."""
    dl = np.diff(wire, axis=0)  # [s, 3]
    mid = 0.5 * (wire[1:] + wire[:-1])
    bx_out = np.empty(px.shape)
    by_out = np.empty(px.shape)
    rz = -mid[:, 2]  # z of the points is 0
    for start in range(0, px.size, 16384):
        sl = slice(start, start + 16384)
        rx = px[sl, None] - mid[None, :, 0]
        ry = py[sl, None] - mid[None, :, 1]
        d2 = rx * rx + ry * ry + (rz * rz + _WIRE_MM**2)
        w = 1.0 / (d2 * np.sqrt(d2))  # |R|^-3
        # B = sum_s dl x R / |R|^3
        bx_out[sl] = w @ (dl[:, 1] * rz) - (ry * w) @ dl[:, 2]
        by_out[sl] = (rx * w) @ dl[:, 2] - w @ (dl[:, 0] * rz)
    return bx_out, by_out


def coil_sensitivities(
    n_coils: int = 10,
    shape: tuple[int, int] = (128, 128),
    fov_mm: tuple[float, float] = (320.0, 320.0),
    rng: np.random.Generator | int | None = None,
    n_rings: int | None = None,
    body_axes_mm: tuple[float, float] | None = None,
    family: str = "wrap",
    standoff_mm: float = _STANDOFF_MM,
    radius_scale: float = 1.0,
) -> np.ndarray:
    """Smooth complex receive sensitivities of a receive array (see the module docstring).

    Parameters
    ----------
    n_coils : int
        Number of coils, >= 1.
    shape : tuple of int
        Image matrix ``(ny, nx)``, each >= 1 (odd sizes work).
    fov_mm : tuple of float
        Field of view ``(y, x)`` in mm; pixel ``(i, j)`` sits at
        ``((i - ny // 2) * fov_y / ny, (j - nx // 2) * fov_x / nx)``.
    rng : numpy.random.Generator, int or None
        Source of the position jitter and of the channel phases.
    n_rings : int, optional
        Rings of loops along the slice axis; default 1 below 6 coils, 2 up to
        20, 3 up to 36, then 4. Neighbouring rings are staggered in angle.
    body_axes_mm : tuple of float, optional
        Semi-axes ``(y, x)`` of the body ellipse the array wraps; default
        ``(0.33 * fov_y, 0.47 * fov_x)``. For the cine phantom pass
        ``CineGeometry.body_semi_axes_mm`` and ``CineGeometry.fov_mm(shape)``.
    family : str
        One of :data:`COIL_FAMILIES`.
    standoff_mm : float
        Distance of the wires (or dipoles) outside the body ellipse, > 0.
    radius_scale : float
        Loop radius relative to the size that tiles the array, > 0 (loop families).

    Returns
    -------
    numpy.ndarray
        complex64 [n_coils, ny, nx], ``max |S| == 1`` over all coils.
    """
    n_coils = check_count("n_coils", n_coils)
    ny, nx = _check_pair("shape", shape, integer=True)
    fov = _check_pair("fov_mm", fov_mm)
    if n_rings is None:
        n_rings = 1 if n_coils < 6 else 2 if n_coils <= 20 else 3 if n_coils <= 36 else 4
    n_rings = check_count("n_rings", n_rings)
    if n_rings > n_coils:
        raise InputError(f"n_rings ({n_rings}) must not exceed n_coils ({n_coils})")
    body = (0.33 * fov[0], 0.47 * fov[1]) if body_axes_mm is None else _check_pair("body_axes_mm", body_axes_mm)
    if family not in COIL_FAMILIES:
        raise InputError(f"unknown coil family {family!r}; known: {', '.join(COIL_FAMILIES)}")
    if not (np.isfinite(standoff_mm) and standoff_mm > 0 and np.isfinite(radius_scale) and radius_scale > 0):
        raise InputError(f"standoff_mm and radius_scale must be finite and > 0, got {standoff_mm}, {radius_scale}")
    g = np.random.default_rng(rng)

    y = (np.arange(ny) - ny // 2) * (fov[0] / ny)
    x = (np.arange(nx) - nx // 2) * (fov[1] / nx)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    check_family_coils(family, n_coils)
    if family == "dipole":
        maps = _dipole_maps(n_coils, xx.ravel(), yy.ravel(), body, standoff_mm, g)
    elif family == "bart":
        maps = _bart_maps(n_coils, xx.ravel(), yy.ravel(), body)
    else:
        maps = np.empty((n_coils, ny * nx), dtype=np.complex128)
        for c, wire in enumerate(_loop_layout(n_coils, n_rings, body, g, family, standoff_mm, radius_scale)):
            b_x, b_y = _loop_field(xx.ravel(), yy.ravel(), wire)
            maps[c] = b_x - 1j * b_y
    maps *= np.exp(1j * g.uniform(0.0, 2 * np.pi, size=(n_coils, 1)))
    maps /= np.abs(maps).max()
    return maps.reshape(n_coils, ny, nx).astype(np.complex64)


def _cubic_matrix(n_fine: int, n_coarse: int) -> np.ndarray:
    """``[n_fine, n_coarse]`` cubic-convolution (Keys, a = -0.5) interpolation weights.

    Fine pixel ``i`` (position ``(i - n_fine // 2) / n_fine`` of the FOV) maps to coarse
    index ``(i - n_fine // 2) * n_coarse / n_fine + n_coarse // 2``; indices beyond the
    edges are clamped (edge values repeated).
    """
    pos = (np.arange(n_fine) - n_fine // 2) * (n_coarse / n_fine) + n_coarse // 2
    base = np.floor(pos).astype(int)
    frac = pos - base
    w = np.zeros((n_fine, n_coarse))
    for off in (-1, 0, 1, 2):
        d = np.abs(frac - off)
        kern = np.where(d <= 1, 1.5 * d**3 - 2.5 * d**2 + 1,
                        np.where(d < 2, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2, 0.0))
        np.add.at(w, (np.arange(n_fine), np.clip(base + off, 0, n_coarse - 1)), kern)
    return w


def coil_maps(n_coils: int, shape: tuple[int, int], fov_mm: tuple[float, float],
              rng: np.random.Generator | int | None = None, grid: int = 48, **options) -> np.ndarray:
    """:func:`coil_sensitivities` on a ``grid x grid`` mesh, cubic-interpolated to ``shape``.

    The coarse pixel positions follow :func:`coil_sensitivities` (pixel ``i`` at
    ``(i - n // 2) * fov / n``), so the interpolated maps sample the same fields; the
    fields are smooth inside the body (the differences, < 0.01 of the peak, sit next
    to the wires) and the direct computation costs ~10x more at 128 x 128.
    ``options`` go to :func:`coil_sensitivities`. Returns complex64 ``[c, ny, nx]``.
    """
    ny, nx = _check_pair("shape", shape, integer=True)
    if int(grid) < 8:
        raise InputError(f"coil grid must be >= 8, got {grid}")
    gy, gx = min(int(grid), ny), min(int(grid), nx)
    coarse = coil_sensitivities(n_coils, (gy, gx), fov_mm, rng, **options)
    if (gy, gx) == (ny, nx):
        return coarse
    wy = _cubic_matrix(ny, gy).astype(np.complex64)
    wx = _cubic_matrix(nx, gx).astype(np.complex64)
    return (wy[None] @ coarse @ wx.T[None]).astype(np.complex64)


__all__ = ["COIL_FAMILIES", "FAMILY_MAX_COILS", "check_family_coils", "coil_sensitivities", "coil_maps"]
