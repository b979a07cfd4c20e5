"""The files a training run writes besides its checkpoint, and its console line per epoch.

In the run folder (rank 0 only; all rewritten whole after every epoch, from the run's history)::

    metrics.csv      one row per epoch (:data:`EPOCH_FIELDS`): train loss, lr, validation
                     loss / PSNR / SSIM, zero-filled PSNR / SSIM of the same validation
                     samples, timings
    metrics.json     the same plus every step's loss terms and lr, with the parameter
                     count, world size and device
    loss_curve.png   train loss per step and validation PSNR per epoch (:func:`plot_curves`)
    validation.png   the first validation sample of the last validated epoch: target,
                     zero-filled and the model
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

EPOCH_FIELDS = ("epoch", "step", "train_loss", "lr", "val_loss", "val_psnr", "val_ssim",
                "zf_psnr", "zf_ssim", "xval_loss", "xval_psnr", "xval_ssim", "xval_zf_psnr", "xval_zf_ssim",
                "seconds", "seconds_per_step")


def write_outputs(out: Path, history: dict, info: dict, example: tuple | None, model_name: str) -> None:
    """Write the run's tables and figures into ``out`` (see the module docstring).

    history : ``{"epochs": [row, ...], "steps": [record, ...], ...}`` as the engine keeps it.
    info : what ``metrics.json`` holds before the history (parameters, world size, device).
    example : ``(set name, target, zero-filled, reconstruction)`` of the last validation, or None.
    model_name : the model's label in the validation figure.
    """
    epochs = history["epochs"]
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=EPOCH_FIELDS, extrasaction="ignore")
        w.writeheader()
        for row in epochs:
            w.writerow({k: row.get(k, "") for k in EPOCH_FIELDS})
    info = {**info, **history}
    (out / "metrics.json").write_text(json.dumps(info, indent=1) + "\n")
    plot_curves(history, out / "loss_curve.png")
    if example is not None and epochs:
        from recon.figures import comparison_figure

        name, target, zf, rec = example
        comparison_figure(target, {"zero-filled": zf, model_name: rec}, out / "validation.png",
                          title=f"validation set {name}, sample 0, epoch {epochs[-1].get('epoch', len(epochs))}")


def epoch_line(row: dict, epochs: int) -> str:
    """The console line of one epoch's row (train loss, lr, pace, validation when there)."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"step {row['step']}", f"loss {row['train_loss']:.4g}",
             f"lr {row['lr']:.3g}", f"{row['seconds_per_step']:.2f} s/step"]
    if "val_psnr" in row:
        parts += [f"val PSNR {row['val_psnr']:.2f} dB (zero-filled {row['zf_psnr']:.2f})",
                  f"SSIM {row['val_ssim']:.4f} (zero-filled {row['zf_ssim']:.4f})"]
    if "xval_psnr" in row:
        parts += [f"held-out acq. PSNR {row['xval_psnr']:.2f} dB (zero-filled {row['xval_zf_psnr']:.2f})",
                  f"SSIM {row['xval_ssim']:.4f}"]
    return " | ".join(parts)


def plot_curves(history: dict, path: str | Path) -> Path:
    """Train loss per step (log scale) and validation PSNR per epoch, as a PNG (Agg, no GUI)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    steps = history.get("steps", [])
    if steps:
        x = np.array([s["step"] for s in steps])
        y = np.array([s["loss"] for s in steps])
        ax1.plot(x, y, lw=0.6, alpha=0.5, label="per step")
        w = max(5, len(y) // 50)
        if len(y) >= 2 * w:
            ax1.plot(x[w - 1:], np.convolve(y, np.ones(w) / w, mode="valid"), lw=1.5, label=f"mean of {w}")
        ax1.set_yscale("log")
        ax1.legend()
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss")
    ax1.set_title("training loss")
    ax1.grid(True, alpha=0.3)
    epochs = history.get("epochs", [])
    for key, zf_key, label, colour in (("val_psnr", "zf_psnr", "held-out patient", "C0"),
                                       ("xval_psnr", "xval_zf_psnr", "held-out patient + acquisition", "C1")):
        val = [e for e in epochs if key in e]
        if val:
            ax2.plot([e["epoch"] for e in val], [e[key] for e in val], "o-", color=colour, label=label)
            ax2.axhline(val[-1][zf_key], color=colour, ls="--", lw=0.8, label=f"{label}: zero-filled")
    if any("val_psnr" in e for e in epochs):
        ax2.legend(fontsize=7)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("PSNR (dB)")
    ax2.set_title("validation PSNR")
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path
