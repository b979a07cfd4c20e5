"""Figures users look at: reference / reconstructions / error maps / x-t profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _norm(x: np.ndarray) -> np.ndarray:
    m = np.abs(x)
    return m / max(float(m.max()), 1e-12)


def comparison_figure(
    reference: np.ndarray,
    methods: dict[str, np.ndarray],
    path: str | Path,
    frame: int = 0,
    profile_row: int | None = None,
    title: str = "",
    error_gain: float = 5.0,
) -> Path:
    """Paper-style comparison of one slice and write it as PNG.

    Row 1: reference and each method at ``frame``; row 2: |error| x ``error_gain``
    of each method; row 3: x-t profiles along image row ``profile_row`` (default:
    the row through the centre, which crosses the heart in our phantom).
    ``reference`` and each method are ``[t, y, x]`` (complex or magnitude).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = _norm(reference)
    t, ny, nx = ref.shape
    row = ny // 2 if profile_row is None else int(profile_row)
    names = ["reference"] + list(methods)
    imgs = [ref] + [_norm(v) for v in methods.values()]
    fig, axes = plt.subplots(3, len(names), figsize=(2.6 * len(names), 7.4), squeeze=False)
    for j, (name, img) in enumerate(zip(names, imgs)):
        axes[0, j].imshow(img[frame], cmap="gray", vmin=0, vmax=1)
        axes[0, j].axhline(row, color="tab:orange", lw=0.6, alpha=0.7)
        axes[0, j].set_title(name, fontsize=9)
        if j:
            axes[1, j].imshow(np.abs(img[frame] - ref[frame]) * error_gain, cmap="inferno", vmin=0, vmax=1)
            axes[1, j].set_title(f"|error| x{error_gain:g}", fontsize=8)
        axes[2, j].imshow(img[:, row, :], cmap="gray", vmin=0, vmax=1, aspect=max(0.6 * nx / t, 1))
        axes[2, j].set_title("x-t profile", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
