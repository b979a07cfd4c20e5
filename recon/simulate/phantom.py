"""Dynamic cardiac cine phantom (magnitude images) and smooth background phase.

The anatomy is drawn in millimetres with signed-distance shapes whose edges are
box-filter anti-aliased (a one-pixel linear ramp), so the images are not binary.
Two views are available:

``"sax"``
    Short axis: a beating left ventricle (bright blood pool, a myocardial ring
    that thickens in systole at roughly constant myocardial area, two papillary
    muscles), a crescent right ventricle sharing the septum, epicardial fat, and
    the thorax around it (subcutaneous fat, chest-wall muscle, lungs, liver,
    spine, descending aorta, pulmonary vessels).
``"lax"``
    Long axis, four-chamber-like: a bullet-shaped LV with apex, the RV beside it,
    the left and right atria; the valve plane moves towards the (almost still)
    apex in systole, so the atria grow while the ventricles shrink.

Coordinates: image row ``y`` points down (anterior is up), column ``x`` to the
right; pixel ``(i, j)`` sits at ``((i - ny // 2) * p, (j - nx // 2) * p)`` mm with
isotropic pixel size ``p`` chosen so that the body ellipse fits the matrix
(:meth:`CineGeometry.pixel_mm`). Pairs such as ``(y, x)`` follow the array order.

Static tissue is exactly constant over time; everything that moves lies inside
:func:`heart_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from recon.checks import check_shape
from recon.errors import InputError

VIEWS = ("sax", "lax")
_MIN_SIZE = 16  # smallest phantom / heart-mask grid, pixels per side

# bSSFP-like relative signal levels (before the final normalisation to max 1).
_BLOOD = 0.92
_MYO = 0.26
_FAT = 0.82
_MUSCLE = 0.25
_LUNG = 0.035
_LIVER = 0.34
_MARROW = 0.48
_CSF = 0.78
_MEDIASTINUM = 0.55
_VESSEL = 0.3


# nominal heart centre (y, x) in mm and angle in degrees per view
_NOMINAL_POSE = {"sax": ((-8.0, 26.0), 200.0), "lax": ((8.0, -14.0), 38.0)}


@dataclass(frozen=True)
class CineGeometry:
    """Geometry of one phantom, shared by :func:`cine_phantom` and :func:`heart_mask`.

    All lengths are in mm; pairs are ``(y, x)``; positions are relative to the
    body centre, which is the image centre.

    Attributes
    ----------
    view : str
        ``"sax"`` or ``"lax"``.
    body_semi_axes_mm : tuple of float
        Semi-axes ``(y, x)`` of the body ellipse (outer skin surface).
    heart_center_mm : tuple of float, optional
        SAX: centre of the LV. LAX: centre of the valve plane (crux) at
        end-diastole. None: the nominal position for ``view``.
    heart_angle_deg : float, optional
        SAX: direction from the LV centre to the RV (0 = +x, 90 = +y, i.e. down).
        LAX: tilt of the base-to-apex axis from "up" towards +x. None: the
        nominal angle for ``view``.
    lv_radius_mm : float
        End-diastolic LV endocardial radius (SAX) or cavity half-width (LAX).
    wall_mm : float
        End-diastolic LV wall thickness.
    lv_length_mm : float
        LAX only: end-diastolic cavity length from the valve plane to the apex.
    ejection_fraction : float
        Fraction of the end-diastolic in-plane LV blood-pool *area* ejected at
        end-systole.
    end_systole : float
        Time of end-systole as a fraction of the cardiac cycle (frame 0 is ED).
    valve_descent_mm : float
        LAX only: movement of the valve plane towards the apex at end-systole.
    heart_shift_mm : tuple of float
        ``(y, x)`` translation of the whole heart at end-systole (scaled by the
        contraction state in between).
    fov_margin : float
        Ratio of field of view to body extent along the limiting axis.
    """

    view: str = "sax"
    body_semi_axes_mm: tuple[float, float] = (105.0, 150.0)
    heart_center_mm: tuple[float, float] | None = None
    heart_angle_deg: float | None = None
    lv_radius_mm: float = 24.0
    wall_mm: float = 9.0
    lv_length_mm: float = 80.0
    ejection_fraction: float = 0.58
    end_systole: float = 0.33
    valve_descent_mm: float = 13.0
    heart_shift_mm: tuple[float, float] = (-1.5, -2.0)
    fov_margin: float = 1.05

    def __post_init__(self) -> None:
        _check_view(self.view)
        centre, angle = _NOMINAL_POSE[self.view]
        if self.heart_center_mm is None:
            object.__setattr__(self, "heart_center_mm", centre)
        if self.heart_angle_deg is None:
            object.__setattr__(self, "heart_angle_deg", angle)
        for name in ("lv_radius_mm", "wall_mm", "lv_length_mm", "fov_margin"):
            if not getattr(self, name) > 0:
                raise InputError(f"CineGeometry.{name} must be > 0, got {getattr(self, name)!r}")
        if min(self.body_semi_axes_mm) <= 0:
            raise InputError(f"CineGeometry.body_semi_axes_mm must be > 0, got {self.body_semi_axes_mm!r}")
        if not 0.0 <= self.ejection_fraction < 0.9:
            raise InputError(f"CineGeometry.ejection_fraction must be in [0, 0.9), got {self.ejection_fraction!r}")
        if not 0.1 < self.end_systole <= 0.5:
            raise InputError(f"CineGeometry.end_systole must be in (0.1, 0.5], got {self.end_systole!r}")

    def pixel_mm(self, shape: tuple[int, int]) -> float:
        """Isotropic pixel size in mm for an image of ``shape = (ny, nx)``."""
        ny, nx = shape
        by, bx = self.body_semi_axes_mm
        return float(self.fov_margin * max(2.0 * by / ny, 2.0 * bx / nx))

    def fov_mm(self, shape: tuple[int, int]) -> tuple[float, float]:
        """Field of view ``(y, x)`` in mm for an image of ``shape = (ny, nx)``.

        Pass it (and ``body_semi_axes_mm``) to
        :func:`recon.simulate.coils.coil_sensitivities` for matching coil maps.
        """
        p = self.pixel_mm(shape)
        return (p * shape[0], p * shape[1])


def _check_view(view: str) -> str:
    if view not in VIEWS:
        raise InputError(f"unknown phantom view {view!r}; expected one of {VIEWS}")
    return view


def phantom_geometry(view: str = "sax", rng: np.random.Generator | int | None = None) -> CineGeometry:
    """Draw a slightly jittered geometry for one phantom.

    Parameters
    ----------
    view : str
        ``"sax"`` or ``"lax"``.
    rng : numpy.random.Generator, int or None
        Source of the jitter (body size, heart position and size, ejection
        fraction, heart translation).

    Returns
    -------
    CineGeometry
    """
    _check_view(view)
    g = np.random.default_rng(rng)
    u = lambda lo, hi: float(g.uniform(lo, hi))  # noqa: E731
    body = (105.0 * u(0.96, 1.04), 150.0 * u(0.96, 1.04))
    shift = (u(-2.5, -0.5), u(-2.5, 0.5))
    (cy, cx), angle = _NOMINAL_POSE[view]
    if view == "sax":
        return CineGeometry(
            view="sax",
            body_semi_axes_mm=body,
            heart_center_mm=(cy + u(-3, 3), cx + u(-3, 3)),
            heart_angle_deg=angle + u(-6, 6),
            lv_radius_mm=24.0 * u(0.93, 1.07),
            wall_mm=9.0 * u(0.92, 1.08),
            ejection_fraction=u(0.52, 0.60),
            end_systole=u(0.31, 0.36),
            heart_shift_mm=shift,
        )
    return CineGeometry(
        view="lax",
        body_semi_axes_mm=body,
        heart_center_mm=(cy + u(-3, 3), cx + u(-3, 3)),
        heart_angle_deg=angle + u(-5, 5),
        lv_radius_mm=23.0 * u(0.93, 1.07),
        wall_mm=9.0 * u(0.92, 1.08),
        lv_length_mm=80.0 * u(0.95, 1.05),
        ejection_fraction=u(0.52, 0.60),
        end_systole=u(0.31, 0.36),
        valve_descent_mm=13.0 * u(0.9, 1.1),
        heart_shift_mm=shift,
    )


def cardiac_contraction(n_phases: int, end_systole: float = 0.33) -> np.ndarray:
    """Contraction state over one cardiac cycle sampled at ``n_phases`` frames.

    0 is end-diastole (frame 0), 1 is end-systole (at ``end_systole`` of the
    cycle). Systole is a smooth fast ejection; diastole has rapid early filling
    (75 % of the stroke volume within a quarter cycle), diastasis, and an atrial
    kick (the remaining 25 %) ending at 92 % of the cycle.

    Parameters
    ----------
    n_phases : int
        Number of frames, >= 1; frame ``k`` is at cycle fraction ``k / n_phases``.
    end_systole : float
        Time of end-systole as a fraction of the cycle, in (0.1, 0.5].

    Returns
    -------
    numpy.ndarray
        float64 [n_phases], values in [0, 1].
    """
    if isinstance(n_phases, bool) or not isinstance(n_phases, (int, np.integer)) or n_phases < 1:
        raise InputError(f"n_phases must be an integer >= 1, got {n_phases!r}")
    if not 0.1 < end_systole <= 0.5:
        raise InputError(f"end_systole must be in (0.1, 0.5], got {end_systole!r}")
    tau = np.arange(n_phases) / n_phases

    def step(x: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 - np.cos(np.pi * np.clip(x, 0.0, 1.0)))

    systole = step(tau / end_systole)
    filling = 0.75 * step((tau - end_systole) / 0.25) + 0.25 * step((tau - 0.78) / 0.14)
    return np.where(tau <= end_systole, systole, 1.0 - filling)


# --------------------------------------------------------------------------- shapes
# Approximate signed distances in mm (negative inside); exact at circle edges and
# first-order accurate near ellipse edges, which is what the anti-aliasing needs.


def _circle(y: np.ndarray, x: np.ndarray, c: tuple[float, float], r: float) -> np.ndarray:
    return np.hypot(y - c[0], x - c[1]) - r


def _ellipse(
    y: np.ndarray, x: np.ndarray, c: tuple[float, float], semi: tuple[float, float], angle_deg: float = 0.0
) -> np.ndarray:
    """Ellipse with semi-axes ``semi = (a, b)`` along the rotated (y', x') axes."""
    a, b = semi
    t = np.deg2rad(angle_deg)
    dy, dx = y - c[0], x - c[1]
    yr = np.cos(t) * dy - np.sin(t) * dx
    xr = np.sin(t) * dy + np.cos(t) * dx
    q = np.sqrt((yr / a) ** 2 + (xr / b) ** 2)
    grad = np.sqrt((yr / a**2) ** 2 + (xr / b**2) ** 2) / np.maximum(q, 1e-9)
    return (q - 1.0) / np.maximum(grad, 1e-9)


def _polar_crescent(
    y: np.ndarray, x: np.ndarray, c: tuple[float, float], r0: float, direction: float, thick: float, span: float
) -> np.ndarray:
    """Region within ``r0 + thick * (1 - |phi / span|**1.7)`` of ``c`` (phi from ``direction``)."""
    dy, dx = y - c[0], x - c[1]
    r = np.hypot(dy, dx)
    phi = np.angle(np.exp(1j * (np.arctan2(dy, dx) - direction)))
    a = np.abs(phi) / span
    r_out = r0 + thick * (1.0 - a**1.7)
    slope = thick * 1.7 * a**0.7 / span
    return (r - r_out) / np.sqrt(1.0 + (slope / np.maximum(r, 1e-6)) ** 2)


def _halfplane(y: np.ndarray, x: np.ndarray, point: tuple[float, float], normal: tuple[float, float]) -> np.ndarray:
    """Signed distance to the half-plane ``(p - point) . normal <= 0``; normal is unit."""
    return (y - point[0]) * normal[0] + (x - point[1]) * normal[1]


def _coverage(sdf: np.ndarray, pixel: float) -> np.ndarray:
    """Fraction of a pixel inside the shape (box-filter anti-aliasing)."""
    return np.clip(0.5 - sdf / pixel, 0.0, 1.0)


def _paint(img: np.ndarray, sdf: np.ndarray, value: np.ndarray | float, pixel: float) -> None:
    m = _coverage(sdf, pixel)
    img *= 1.0 - m
    img += m * value


def _texture(shape: tuple[int, int], sigma_px: float, g: np.random.Generator) -> np.ndarray:
    """Smooth zero-mean unit-variance random field (low-pass filtered white noise)."""
    t = ndimage.gaussian_filter(g.standard_normal(shape), max(sigma_px, 1.0), mode="wrap")
    t -= t.mean()
    return t / max(float(t.std()), 1e-12)


# --------------------------------------------------------------------------- anatomy


class _Grid:
    def __init__(self, shape: tuple[int, int], geom: CineGeometry):
        self.shape = shape
        self.p = geom.pixel_mm(shape)
        iy = (np.arange(shape[0]) - shape[0] // 2) * self.p
        ix = (np.arange(shape[1]) - shape[1] // 2) * self.p
        self.y, self.x = np.meshgrid(iy, ix, indexing="ij")


def _static_background(grid: _Grid, geom: CineGeometry, g: np.random.Generator) -> np.ndarray:
    """Thorax around the heart: float64 [y, x], constant over time."""
    y, x, p = grid.y, grid.x, grid.p
    by, bx = geom.body_semi_axes_mm
    fine = _texture(grid.shape, 2.5 / p, g)
    coarse = _texture(grid.shape, 12.0 / p, g)
    tex = 0.6 * fine + 0.8 * coarse

    img = np.zeros(grid.shape)
    _paint(img, _ellipse(y, x, (0.0, 0.0), (by, bx)), _FAT * (1 + 0.05 * tex), p)
    _paint(img, _ellipse(y, x, (2.0, 0.0), (by - 10.0, bx - 13.0)), _MUSCLE * (1 + 0.08 * tex), p)
    cavity = _ellipse(y, x, (-6.0, 0.0), (by - 29.0, bx - 25.0))
    _paint(img, cavity, _LUNG * (1 + 0.3 * tex), p)

    if geom.view == "sax":
        liver = np.maximum(_ellipse(y, x, (0.55 * by, -0.5 * bx), (0.55 * by, 0.6 * bx), 25.0), cavity)
        medi = _ellipse(y, x, (0.3 * by, 0.05 * bx), (0.24 * by, 0.17 * bx), 0.0)
        ant_fat = _ellipse(y, x, (-0.62 * by, -0.12 * bx), (0.13 * by, 0.2 * bx), -10.0)
    else:
        liver = np.maximum(_ellipse(y, x, (0.62 * by, -0.55 * bx), (0.5 * by, 0.55 * bx), 30.0), cavity)
        medi = _ellipse(y, x, (0.45 * by, 0.02 * bx), (0.2 * by, 0.2 * bx), 0.0)
        ant_fat = _ellipse(y, x, (-0.6 * by, -0.2 * bx), (0.12 * by, 0.18 * bx), -15.0)
    _paint(img, liver, _LIVER * (1 + 0.1 * tex), p)
    _paint(img, np.maximum(ant_fat, cavity), 0.75 * _FAT * (1 + 0.1 * tex), p)
    _paint(img, np.maximum(medi, cavity), _MEDIASTINUM * (1 + 0.12 * tex), p)

    # spine (vertebral body with marrow, canal with CSF), aorta, oesophagus, sternum
    _paint(img, _ellipse(y, x, (0.68 * by, 0.0), (15.0, 17.0)), _MARROW * (1 + 0.1 * tex), p)
    _paint(img, _circle(y, x, (0.68 * by + 22.0, 0.0), 6.5), _CSF, p)
    _paint(img, _circle(y, x, (0.46 * by, 0.17 * bx), 11.0), _BLOOD, p)
    _paint(img, _circle(y, x, (0.46 * by, 0.02 * bx), 6.0), 0.3, p)
    _paint(img, _ellipse(y, x, (-by + 17.0, -0.03 * bx), (5.0, 11.0)), _MARROW, p)

    # pulmonary vessels: small round vessels scattered in the lungs
    lungs = (cavity < -6.0) & (liver > 4.0) & (medi > 4.0) & (ant_fat > 4.0)
    heart_keepout = _heart_outline_sdf(y, x, geom, 0.0) > 8.0
    candidates = np.flatnonzero(lungs & heart_keepout)
    if candidates.size:
        picks = g.choice(candidates, size=min(14, candidates.size), replace=False)
        for k in picks:
            c = (float(y.flat[k]), float(x.flat[k]))
            _paint(img, np.maximum(_circle(y, x, c, float(g.uniform(1.5, 3.5))), cavity), _VESSEL, p)
    return img


def _heart_frame(c: float, geom: CineGeometry) -> dict[str, float]:
    """Scalar shape parameters of the heart at contraction state ``c`` in [0, 1]."""
    r_ed = geom.lv_radius_mm
    w_ed = geom.wall_mm
    shift = (c * geom.heart_shift_mm[0], c * geom.heart_shift_mm[1])
    if geom.view == "sax":
        area_ed = np.pi * r_ed**2
        myo_ed = np.pi * ((r_ed + w_ed) ** 2 - r_ed**2)
        r = np.sqrt(area_ed * (1.0 - geom.ejection_fraction * c) / np.pi)
        # roughly constant myocardial area (+10 % at ES for through-plane motion)
        r_epi = np.sqrt(myo_ed * (1.0 + 0.1 * c) / np.pi + r**2)
        return dict(cy=geom.heart_center_mm[0] + shift[0], cx=geom.heart_center_mm[1] + shift[1], r=r, r_epi=r_epi)
    length_ed = geom.lv_length_mm
    base = geom.valve_descent_mm * c
    apex_endo = length_ed - 2.0 * c
    apex_epi = length_ed + 0.7 * w_ed
    half_len = apex_endo - base
    # area of the half-ellipse cavity: pi/2 * half_len * r
    r = r_ed * length_ed * (1.0 - geom.ejection_fraction * c) / half_len
    myo_ed = 0.5 * np.pi * ((length_ed + 0.7 * w_ed) * (r_ed + w_ed) - length_ed * r_ed)
    r_epi = (myo_ed * (1.0 + 0.1 * c) / (0.5 * np.pi) + half_len * r) / (apex_epi - base)
    return dict(
        cy=geom.heart_center_mm[0] + shift[0],
        cx=geom.heart_center_mm[1] + shift[1],
        r=r,
        r_epi=r_epi,
        base=base,
        half_len=half_len,
        half_len_epi=apex_epi - base,
    )


def _sax_heart_sdfs(y: np.ndarray, x: np.ndarray, geom: CineGeometry, c: float) -> dict[str, np.ndarray]:
    f = _heart_frame(c, geom)
    lv_c = (f["cy"], f["cx"])
    th = np.deg2rad(geom.heart_angle_deg)
    # RV cavity: a crescent on the LV epicardium, thickest towards the RV, ending at the
    # insertion points +-span from that direction; it thins in systole (free wall moves inwards)
    thick = 0.55 * (geom.lv_radius_mm + geom.wall_mm) * (1.0 - 0.45 * c)
    span = np.deg2rad(78.0 - 6.0 * c)
    lv_epi = _circle(y, x, lv_c, f["r_epi"])
    rv_out = _polar_crescent(y, x, lv_c, f["r_epi"], th, thick, span)
    rv_endo = np.maximum(rv_out, -lv_epi)
    rv_epi = np.maximum(rv_out - 3.5, -lv_epi)
    # papillary muscles (antero-lateral and postero-medial), attached to the wall
    pap = []
    for ang, rad in ((th + np.deg2rad(150), 3.6), (th - np.deg2rad(120), 4.0)):
        rr = rad * (1.0 + 0.3 * c)
        dd = f["r"] - 0.55 * rr
        pap.append(_circle(y, x, (lv_c[0] + dd * np.sin(ang), lv_c[1] + dd * np.cos(ang)), rr))
    # epicardial fat in the interventricular grooves (RV insertion points)
    grooves = []
    for sign in (1.0, -1.0):
        ang = th + sign * np.deg2rad(62.0)
        rr = f["r_epi"] + 2.0
        grooves.append(_circle(y, x, (lv_c[0] + rr * np.sin(ang), lv_c[1] + rr * np.cos(ang)), 5.0))
    return dict(
        outline=np.minimum(lv_epi, rv_epi),
        grooves=np.minimum(*grooves),
        rv_epi=rv_epi,
        rv_endo=rv_endo,
        lv_epi=lv_epi,
        lv_endo=_circle(y, x, lv_c, f["r"]),
        papillary=np.minimum(*pap),
    )


def _lax_heart_sdfs(
    y: np.ndarray, x: np.ndarray, geom: CineGeometry, c: float, valve_open: float = 1.0
) -> dict[str, np.ndarray]:
    f = _heart_frame(c, geom)
    t = np.deg2rad(geom.heart_angle_deg)
    eu = (-np.cos(t), np.sin(t))  # (y, x): base -> apex
    ev = (np.sin(t), np.cos(t))  # (y, x): towards the LV lateral wall
    crux = (f["cy"], f["cx"])

    def at(u: float, v: float) -> tuple[float, float]:
        return (crux[0] + u * eu[0] + v * ev[0], crux[1] + u * eu[1] + v * ev[1])

    ang = geom.heart_angle_deg + 180.0  # ellipses: semi-axes (along u, along v)
    base = f["base"]
    r_ed, w = geom.lv_radius_mm, geom.wall_mm
    v_lv = 0.5 * w + r_ed  # LV cavity centre line; the septum is around v = 0
    apex_side = _halfplane(y, x, at(base, 0.0), (-eu[0], -eu[1]))  # < 0 towards the apex
    atrial_side = -apex_side
    # cavities reach 3 mm past the valve plane (into blood) so that no seam shows
    lv_endo = np.maximum(_ellipse(y, x, at(base, v_lv), (f["half_len"], f["r"]), ang), apex_side - 3.0)
    lv_epi = np.maximum(_ellipse(y, x, at(base, v_lv), (f["half_len_epi"], f["r_epi"]), ang), apex_side)
    s = 1.0 - 0.2 * c
    r_rv = 0.8 * r_ed * s
    v_rv = -0.5 * w - 0.8 * r_rv
    rv_len = 0.72 * f["half_len"] + 5.0 * c
    rv_ell = _ellipse(y, x, at(base, v_rv), (rv_len, r_rv), ang)
    rv_ell_epi = _ellipse(y, x, at(base, v_rv), (rv_len + 3.0, r_rv + 3.5), ang)
    rv_endo = np.maximum(np.maximum(rv_ell, -lv_epi), apex_side - 3.0)
    rv_epi = np.maximum(np.maximum(rv_ell_epi, -lv_epi), apex_side)
    # atria: fixed posterior walls, the valve plane is their moving roof
    back = -46.0
    half = 0.5 * (base - back)
    la = np.maximum(
        _ellipse(y, x, at(back + half, v_lv + 2.0), (half + 3.0, 0.9 * r_ed + 2.0 * c), ang), atrial_side - 3.0
    )
    ra = np.maximum(
        _ellipse(y, x, at(back + half + 3.0, v_rv - 4.0), (half, 0.85 * r_ed + 2.0 * c), ang), atrial_side - 3.0
    )
    atria = np.minimum(la, ra)
    atrial_wall = atria - 2.5
    # AV-groove fat at the outer ends of the valve plane
    grooves = np.minimum(
        _circle(y, x, at(base - 2.0, v_lv + f["r_epi"] + 2.0), 5.5),
        _circle(y, x, at(base - 2.0, v_rv - r_rv - 5.0), 5.0),
    )
    # mitral and tricuspid leaflets hinged at the annulus: closed they span the
    # valve plane, open they point into the ventricle along its walls
    leaf = np.deg2rad(75.0 * valve_open)
    leaflets = np.full(y.shape, np.inf)
    for centre, half_width in ((v_lv, f["r"]), (v_rv + 0.25 * r_rv, 0.75 * r_rv)):
        for side in (-1.0, 1.0):
            hinge_v = centre + side * half_width
            tip = (base + half_width * np.sin(leaf), hinge_v - side * half_width * np.cos(leaf))
            seg = _capsule(y, x, at(base, hinge_v), at(*tip), 0.9)
            leaflets = np.minimum(leaflets, seg)
    outline = np.minimum(np.minimum(lv_epi, rv_epi), atrial_wall)
    return dict(
        outline=outline,
        grooves=grooves,
        atrial_wall=atrial_wall,
        atria=atria,
        rv_epi=rv_epi,
        rv_endo=rv_endo,
        lv_epi=lv_epi,
        lv_endo=lv_endo,
        leaflets=leaflets,
    )


def _capsule(y: np.ndarray, x: np.ndarray, a: tuple[float, float], b: tuple[float, float], r: float) -> np.ndarray:
    """Distance to the line segment a-b, minus r."""
    ay, ax = a
    dy, dx = b[0] - ay, b[1] - ax
    h = np.clip(((y - ay) * dy + (x - ax) * dx) / max(dy * dy + dx * dx, 1e-12), 0.0, 1.0)
    return np.hypot(y - ay - h * dy, x - ax - h * dx) - r


def _heart_sdfs(
    y: np.ndarray, x: np.ndarray, geom: CineGeometry, c: float, valve_open: float = 1.0
) -> dict[str, np.ndarray]:
    if geom.view == "sax":
        return _sax_heart_sdfs(y, x, geom, c)
    return _lax_heart_sdfs(y, x, geom, c, valve_open)


_MAX_FAT_MM = 4.0  # widest epicardial fat layer around the heart outline


def _heart_outline_sdf(y: np.ndarray, x: np.ndarray, geom: CineGeometry, c: float) -> np.ndarray:
    """Signed distance to everything that moves (heart and its epicardial fat)."""
    h = _heart_sdfs(y, x, geom, c)
    return np.minimum(h["outline"] - _MAX_FAT_MM, h["grooves"])


def _valve_open(tau: np.ndarray, end_systole: float) -> np.ndarray:
    """Atrio-ventricular valve opening in [0, 1] at cycle fractions ``tau``:
    closed in systole, opening just after end-systole, closing at the cycle end."""
    opening = np.clip((tau - end_systole) / 0.05, 0.0, 1.0)
    closing = np.clip((1.0 - tau) / 0.05, 0.0, 1.0)
    return 0.5 * (1.0 - np.cos(np.pi * np.minimum(opening, closing)))


def _paint_heart(
    img: np.ndarray, grid: _Grid, geom: CineGeometry, c: float, valve_open: float, tex: np.ndarray, fat_tex: np.ndarray
) -> None:
    y, x, p = grid.y, grid.x, grid.p
    h = _heart_sdfs(y, x, geom, c, valve_open)
    fat_width = 1.0 + (_MAX_FAT_MM - 1.0) / (1.0 + np.exp(-2.0 * fat_tex))  # patchy, 1..4 mm
    _paint(img, h["outline"] - fat_width, 0.85 * _FAT * (1 + 0.08 * tex), p)
    _paint(img, h["grooves"], _FAT * (1 + 0.05 * tex), p)
    if geom.view == "lax":
        _paint(img, h["atrial_wall"], _MYO * (1 + 0.05 * tex), p)
        _paint(img, h["atria"], 0.95 * _BLOOD * (1 + 0.03 * tex), p)
    _paint(img, h["rv_epi"], _MYO * (1 + 0.05 * tex), p)
    _paint(img, h["rv_endo"], 0.97 * _BLOOD * (1 + 0.03 * tex), p)
    _paint(img, h["lv_epi"], _MYO * (1 + 0.05 * tex), p)
    _paint(img, h["lv_endo"], _BLOOD * (1 + 0.03 * tex), p)
    if geom.view == "sax":
        _paint(img, h["papillary"], _MYO * 1.05, p)
    else:
        _paint(img, h["leaflets"], _MYO * 1.1, p)


def cine_phantom(
    n_phases: int = 12,
    shape: tuple[int, int] = (128, 128),
    view: str = "sax",
    rng: np.random.Generator | int | None = None,
    geometry: CineGeometry | None = None,
) -> np.ndarray:
    """Dynamic cardiac cine magnitude phantom over one cardiac cycle.

    Frame 0 is end-diastole; end-systole falls at ``geometry.end_systole`` of
    the cycle (about one third). See :func:`cardiac_contraction` for the time
    course and the module docstring for the anatomy.

    Parameters
    ----------
    n_phases : int
        Number of cardiac phases (frames), >= 1.
    shape : tuple of int
        Image matrix ``(ny, nx)``, each >= 16; odd and non-square sizes work.
    view : str
        ``"sax"`` (short axis) or ``"lax"`` (long axis, four-chamber-like).
    rng : numpy.random.Generator, int or None
        Source of the geometry jitter and the tissue texture. Equal integer
        seeds give identical phantoms.
    geometry : CineGeometry, optional
        Use this geometry instead of drawing one from ``rng`` (texture is still
        drawn from ``rng``). Its ``view`` must equal ``view``.

    Returns
    -------
    numpy.ndarray
        float32 [n_phases, ny, nx], values in [0, 1], maximum 1.
    """
    _check_view(view)
    shape = check_shape(shape, minimum=_MIN_SIZE)
    g = np.random.default_rng(rng)
    cardiac_contraction(n_phases)  # validates n_phases before any work
    if geometry is None:
        geometry = phantom_geometry(view, g)
    elif geometry.view != view:
        raise InputError(f"geometry.view {geometry.view!r} does not match view {view!r}")
    contraction = cardiac_contraction(n_phases, geometry.end_systole)
    grid = _Grid(shape, geometry)
    background = _static_background(grid, geometry, g)
    heart_tex = _texture(shape, 3.0 / grid.p, g)
    fat_tex = _texture(shape, 8.0 / grid.p, g)
    valves = _valve_open(np.arange(n_phases) / n_phases, geometry.end_systole)
    out = np.empty((n_phases, *shape), dtype=np.float32)
    for k in range(n_phases):
        frame = background.copy()
        _paint_heart(frame, grid, geometry, float(contraction[k]), float(valves[k]), heart_tex, fat_tex)
        out[k] = frame
    out = np.clip(out, 0.0, None)
    out /= max(float(out.max()), 1e-12)
    return out


def heart_mask(
    shape: tuple[int, int] = (128, 128),
    view: str = "sax",
    rng: np.random.Generator | int | None = None,
    geometry: CineGeometry | None = None,
    margin_mm: float = 6.0,
) -> np.ndarray:
    """Region of interest around the heart, covering it in every cardiac phase.

    Pass the same integer seed (or the same ``geometry``) as to
    :func:`cine_phantom` to get the mask of that phantom. Every pixel that
    changes over time in the phantom lies inside the mask.

    Parameters
    ----------
    shape : tuple of int
        Image matrix ``(ny, nx)``, each >= 16.
    view : str
        ``"sax"`` or ``"lax"``.
    rng : numpy.random.Generator, int or None
        Seed for the geometry, as in :func:`cine_phantom`; ignored if
        ``geometry`` is given.
    geometry : CineGeometry, optional
        Explicit geometry.
    margin_mm : float
        Extra margin around the heart outline (including its epicardial fat).

    Returns
    -------
    numpy.ndarray
        bool [ny, nx].
    """
    _check_view(view)
    shape = check_shape(shape, minimum=_MIN_SIZE)
    if margin_mm < 0:
        raise InputError(f"margin_mm must be >= 0, got {margin_mm!r}")
    if geometry is None:
        geometry = phantom_geometry(view, np.random.default_rng(rng))
    elif geometry.view != view:
        raise InputError(f"geometry.view {geometry.view!r} does not match view {view!r}")
    grid = _Grid(shape, geometry)
    mask = np.zeros(shape, dtype=bool)
    for c in np.linspace(0.0, 1.0, 9):
        sdf = _heart_outline_sdf(grid.y, grid.x, geometry, float(c))
        mask |= sdf < margin_mm + grid.p
    return mask


def smooth_phase(
    shape: tuple[int, int], rng: np.random.Generator | int | None = None, max_rad: float = np.pi / 2
) -> np.ndarray:
    """Smooth spatially varying background phase.

    A random polynomial of degree <= 2 plus three random low-frequency plane
    waves (at most 1.5 cycles across the field of view), scaled so that the
    largest absolute value is between 0.6 and 1 times ``max_rad``.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)``, each >= 1.
    rng : numpy.random.Generator, int or None
        Source of the random coefficients.
    max_rad : float
        Bound on the absolute phase in radians, >= 0.

    Returns
    -------
    numpy.ndarray
        float32 [ny, nx], ``|phase| <= max_rad``.
    """
    shape = check_shape(shape)
    if not np.isfinite(max_rad) or max_rad < 0:
        raise InputError(f"max_rad must be a finite number >= 0, got {max_rad!r}")
    g = np.random.default_rng(rng)
    yy, xx = np.meshgrid(
        np.linspace(-1.0, 1.0, shape[0]), np.linspace(-1.0, 1.0, shape[1]), indexing="ij"
    )
    c = g.normal(size=6) * np.array([0.3, 1.0, 1.0, 0.5, 0.5, 0.5])
    phase = c[0] + c[1] * yy + c[2] * xx + c[3] * yy * yy + c[4] * xx * xx + c[5] * yy * xx
    for _ in range(3):
        ky, kx = g.uniform(-0.75, 0.75, size=2) * np.pi  # <= 0.75 cycles per unit: 1.5 per FOV
        phase += 0.5 * g.normal() * np.cos(ky * yy + kx * xx + g.uniform(0, 2 * np.pi))
    peak = float(np.abs(phase).max())
    if peak > 0:
        phase *= max_rad * g.uniform(0.6, 1.0) / peak
    return phase.astype(np.float32)


__all__ = [
    "VIEWS",
    "CineGeometry",
    "phantom_geometry",
    "cardiac_contraction",
    "cine_phantom",
    "heart_mask",
    "smooth_phase",
]
