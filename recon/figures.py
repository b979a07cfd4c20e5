"""Figures users look at: reference / reconstructions / error maps / x-t profiles.

Drawn with matplotlib's object API on an Agg canvas (no pyplot state, no GUI), so
figures can be made from any thread of a server or a training run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.heart import heart_box


def _norm(x: np.ndarray) -> np.ndarray:
    """Magnitude of ``x [t, y, x]``, each frame divided by its maximum (CMRxRecon)."""
    m = np.abs(np.asarray(x))
    return m / np.maximum(m.max(axis=(-2, -1), keepdims=True), 1e-12)


def _scores(reference: np.ndarray, image: np.ndarray, frame: int = 0,
            box: tuple[slice, slice] | None = None) -> str:
    """Whole-cine PSNR / SSIM and, with a ``box``, the SSIM of the shown crop at ``frame``."""
    from recon.metrics import psnr, ssim

    text = f"PSNR {np.mean(psnr(reference, image)):.2f} dB, SSIM {np.mean(ssim(reference, image)):.3f}"
    if box is not None:
        rows, cols = box
        crop_ssim = float(np.mean(ssim(np.abs(reference[frame])[rows, cols], np.abs(image[frame])[rows, cols])))
        text += f"\nthis crop: SSIM {crop_ssim:.3f}"
    return text


def comparison_figure(
    reference: np.ndarray,
    methods: dict[str, np.ndarray],
    path: str | Path,
    frame: int = 0,
    profile_row: int | None = None,
    title: str = "",
    scores: dict[str, str] | None = None,
    crop: bool = True,
) -> Path:
    """Paper-style comparison of one slice, written as PNG.

    Row 1: the reference and each method at ``frame``, in a square crop centred on the
    beating heart (:func:`recon.heart.heart_box`; the whole image with ``crop=False``),
    each titled with its score (``scores[name]``, default PSNR / SSIM of the whole
    cine against the reference, :mod:`recon.metrics`, and the SSIM of the crop shown);
    row 2: the absolute error of each method, ``|method - reference|`` as a fraction of the reference maximum, on one
    colour scale with a colour bar; row 3: x-t profiles along the image row through the
    heart (``profile_row`` overrides it), time downwards, across the crop. Images are
    shown in the window ``[0, p99.5]`` of the reference crop.
    ``reference`` and each method are ``[t, y, x]`` (complex or magnitude); images are
    normalised per frame to their maximum, as the metrics do.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ref = _norm(reference)
    t = ref.shape[0]
    rows, cols = heart_box(ref) if crop else (slice(None), slice(None))
    row = (rows.start or 0) + (rows.stop - rows.start) // 2 if crop else ref.shape[1] // 2
    if profile_row is not None:
        row = int(profile_row)
    names = ["reference"] + list(methods)
    imgs = [ref] + [_norm(v) for v in methods.values()]
    errors = [np.abs(img - ref) for img in imgs[1:]]
    emax = max([float(np.percentile(e[frame][rows, cols], 99.5)) for e in errors] + [1e-6])
    width = cols.stop - cols.start if crop else ref.shape[2]
    # display window: the reference crop's 99.5th percentile (a bright fat spot elsewhere
    # in the frame must not leave the heart dark)
    vmax = max(float(np.percentile(ref[frame][rows, cols], 99.5)), 1e-6)

    fig = Figure(figsize=(2.5 * len(names) + 0.6, 7.8), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, len(names), squeeze=False)
    err_im = None
    box = (rows, cols) if crop else None
    for j, (name, img) in enumerate(zip(names, imgs)):
        axes[0, j].imshow(img[frame][rows, cols], cmap="gray", vmin=0, vmax=vmax)
        axes[0, j].axhline(row - (rows.start or 0), color="tab:orange", lw=0.6, alpha=0.7)
        label = name
        if j:
            label += "\n" + ((scores or {}).get(name) or _scores(reference, methods[name], frame, box))
        axes[0, j].set_title(label, fontsize=8)
        if j:
            err_im = axes[1, j].imshow(errors[j - 1][frame][rows, cols], cmap="inferno", vmin=0, vmax=emax)
            axes[1, j].set_title("|error|", fontsize=8)
        axes[2, j].imshow(img[:, row, cols], cmap="gray", vmin=0, vmax=vmax, aspect=max(0.6 * width / t, 1))
        axes[2, j].set_title("x-t profile (time down)", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].axis("off")
    if err_im is not None:
        bar = fig.colorbar(err_im, ax=list(axes[1, 1:]), fraction=0.025, pad=0.01)
        bar.set_label("|error| / reference max", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    return _save(fig, path, title)


def region_figure(references: dict[str, np.ndarray], path: str | Path, frame: int = 0, title: str = "") -> Path:
    """The dynamic / static region split of each reference series, written as PNG.

    ``references``: label -> reference ``[t, y, x]`` (complex or magnitude), one column
    each. Row 1: the frame ``frame`` with the dynamic region
    (:func:`recon.metrics.regions.dynamic_mask`: temporal standard deviation of the
    max-normalised frames above its threshold measured on the series, ``NOISE_MULTIPLE``
    x the noise of the static body) tinted red and its share of the pixels in the title;
    row 2: that temporal standard deviation (:func:`recon.metrics.regions.temporal_std`) with a
    colour bar and the threshold drawn as a contour. The static region is the rest.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from recon.metrics.regions import NOISE_MULTIPLE, dynamic_region, temporal_std

    if not references:
        raise InputError("region figure: no reference series given")
    fig = Figure(figsize=(3.0 * len(references) + 0.8, 6.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(references), squeeze=False)
    for j, (label, reference) in enumerate(references.items()):
        ref = _norm(reference)
        mask, threshold = dynamic_region(ref)
        std = temporal_std(ref)[0].numpy()
        vmax = max(float(np.percentile(ref[frame], 99.5)), 1e-6)
        axes[0, j].imshow(ref[frame], cmap="gray", vmin=0, vmax=vmax)
        tint = np.zeros(mask.shape + (4,))
        tint[mask] = (1.0, 0.15, 0.1, 0.45)
        axes[0, j].imshow(tint)
        axes[0, j].set_title(f"{label}\ndynamic region (red): {100 * mask.mean():.1f} % of pixels", fontsize=8)
        im = axes[1, j].imshow(std, cmap="viridis")
        if 0 < mask.sum() < mask.size:
            axes[1, j].contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.6)
        axes[1, j].set_title(f"temporal std; threshold {threshold:.3g} = {NOISE_MULTIPLE:g} x noise (white)",
                             fontsize=8)
        bar = fig.colorbar(im, ax=axes[1, j], fraction=0.046, pad=0.02)
        bar.ax.tick_params(labelsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path, title)


def bank_depth_figure(points: dict[int, list[tuple[str, dict]]], slices: dict[int, int], path: str | Path,
                      title: str = "", extra: dict[int, tuple[str, dict]] | None = None) -> Path:
    """Quality against the feature bank's depth K (the paper's Fig. 5), written as PNG.

    ``points``: R -> ``[(K label, summary row), ...]`` in the order of the x axis
    (``"2"``, ``"3"``, ``"all"``); a summary row holds ``<metric>_mean`` / ``_std`` over the
    slices (:func:`crunet.evaluate.evaluate`'s summary); ``slices``: R -> the number of
    slices behind those means. One column per R (the scales differ by R), one row per
    metric (PSNR of the whole field of view, PSNR of the dynamic region, SSIM); error bars:
    the standard error of the mean over the slices (std / sqrt(n)). ``extra``: R -> ``(legend
    label, summary row)`` of one more model at the last depth, drawn as an open marker beside
    the line (a model of that depth trained otherwise, e.g. the shipped one against the
    equally-trained depths of the line).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = (("psnr", "PSNR dB"), ("dynamic_psnr", "PSNR dB, dynamic"), ("ssim", "SSIM"))
    if not points or any(len(v) < 2 for v in points.values()):
        raise InputError("bank-depth figure: needs at least two depths at every R")
    fig = Figure(figsize=(max(2.9 * len(points) + 0.6, 5.5), 6.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), len(points), squeeze=False)
    for j, (r, row) in enumerate(points.items()):
        labels = [k for k, _ in row]
        root_n = max(int(slices.get(r, 1)), 1) ** 0.5
        for i, (key, name) in enumerate(metrics):
            ax = axes[i, j]
            if all(f"{key}_mean" in v for _, v in row):
                mean = [v[f"{key}_mean"] for _, v in row]
                sem = [v.get(f"{key}_std", 0.0) / root_n for _, v in row]
                ax.errorbar(range(len(labels)), mean, yerr=sem, marker="o", capsize=3)
            other = (extra or {}).get(r)
            if other is not None and f"{key}_mean" in other[1]:
                ax.errorbar([len(labels) - 1 + 0.15], [other[1][f"{key}_mean"]],
                            yerr=[other[1].get(f"{key}_std", 0.0) / root_n], marker="s", mfc="none",
                            color="C3", capsize=3, linestyle="none", label=other[0])
                if i == 0:
                    ax.legend(fontsize=7, loc="best")
            ax.set_xticks(range(len(labels)), [f"K = {k}" for k in labels])
            ax.set_title(f"R = {r}: {name}" if i == 0 else name, fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    return _save(fig, path, title)


def _save(fig, path: str | Path, title: str | None = None) -> Path:
    """Title the figure, write it atomically as PNG (a reader never sees half a file); the path."""
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path
