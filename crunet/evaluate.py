"""Compare reconstruction methods on data with ground truth: table, statistics, figure.

For every slice of every raw file (ISMRMRD files carrying ``/dataset/ground_truth``,
as written by ``crunet simulate`` and ``crunet convert --full``, or the ISMRMRD tool's
``ismrmrd_generate_cartesian_shepp_logan`` files: :func:`recon.io.raw.read_ground_truth`), every method runs
through the one pipeline (:func:`recon.pipeline.reconstruct_slice`), coil maps
estimated once per slice and shared by all methods. Methods are classical
(``zf``, ``sense``, ``lps``), installed trained weights by name (``crunet_ca``,
``crunet``, ``crunet_conv``, ``crnn``) and any weights directories, side by side.
Each result is scored as CMRxRecon scores (PSNR, SSIM, NMSE, HaarPSI on per-frame
max-normalised magnitudes; optional centre crop) plus the dynamic/static region split,
with the seconds the method took on the slice. Outputs: ``results.csv`` (per slice
and method), ``table.md`` and ``table.csv`` (means and standard deviations),
``stats.csv`` (Wilcoxon signed-rank with Bonferroni correction against a reference
method, per metric of :data:`STAT_METRICS` that every row has) and one paper-style
figure per slice (reference, zero-filled, methods, error maps, x-t profile through the
heart).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.figures import comparison_figure
from recon.io.raw import read_ground_truth, read_raw
from recon.metrics import cmrxrecon_crop_size, psnr, region_split_metrics, ssim, summarise
from recon.methods import LABELS
from recon.pipeline import COMPARED_METHODS, ReconConfig, method_configs, reconstruct_slice
from recon.slicedata import SliceData
from recon.stats import compare_methods

METRICS = ("psnr", "ssim", "nmse", "haarpsi", "dists", "dynamic_psnr", "static_psnr", "dynamic_ssim",
           "static_ssim", "centre_psnr", "centre_ssim", "seconds")
#: Scores every row carries; a stored row without one of them is computed again.
ROW_SCORES = ("psnr", "ssim", "centre_psnr", "centre_ssim")
#: Metrics tested against the reference method (Wilcoxon + Bonferroni), each when every row has it.
STAT_METRICS = ("psnr", "ssim", "haarpsi", "dists")


@dataclass(frozen=True)
class EvalConfig:
    """methods : method names (classical or installed weights names), in table order.
    weights : weights directories run as method ``model``, after ``methods``, labelled
        by folder name.
    reference_method : label the others are tested against (default: the last one).
    device : ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    reuse : keep every row in ``<out>/rows.jsonl`` and reuse the rows of a (file, slice,
        method) already there instead of reconstructing again. A row is keyed by the
        method's full settings and, for a learned method, its weights hash, so new
        weights or options run again; the files themselves are keyed by path and
        modification time. Figures need every reconstruction, so without a ``cache``
        ``figures`` runs the methods whatever is stored.
    figure_slices : slice indices that get a figure (None: every slice) when ``figures``.
    cache : a folder that keeps the rows (instead of ``<out>``) and each reconstruction's
        magnitude (``<key hash>.npy``, float32 [t, y, x]), implying ``reuse``: a method whose
        row and image are both there is not run again, figures included, so adding one
        method to a long comparison runs only that method.
    """

    methods: tuple[str, ...] = COMPARED_METHODS
    weights: tuple[str, ...] = ()
    coil_method: str = "espirit"
    coil_second_set: bool = True
    crop: bool = False
    reference_method: str | None = None  # default: the last method
    alpha: float = 0.05
    figures: bool = True
    device: str = "auto"
    reuse: bool = False
    cache: str | None = None
    figure_slices: tuple[int, ...] | None = None

    def configs(self) -> dict[str, ReconConfig]:
        """Label -> validated ReconConfig, in table order."""
        return method_configs(self.methods, self.weights, coil_method=self.coil_method,
                              coil_second_set=self.coil_second_set, device=self.device)


def run_methods(s: SliceData, configs: dict[str, ReconConfig]) -> tuple[dict[str, np.ndarray], dict[str, float],
                                                                          float]:
    """Every method on one slice through :func:`reconstruct_slice`, one coil-map estimate shared.

    Returns ``(label -> complex64 frames [t, y, x], label -> seconds of the method, seconds of the maps)``.
    """
    recs, seconds, maps, t_maps = {}, {}, None, 0.0
    for label, rc in configs.items():
        res = reconstruct_slice(s, rc, maps=maps)
        if maps is None:
            maps, t_maps = res.maps, res.seconds_maps
        recs[label], seconds[label] = res.frames, res.seconds_method
    return recs, seconds, t_maps


def evaluate(paths: list[str | Path], out_dir: str | Path, cfg: EvalConfig = EvalConfig(),
             log=print) -> dict:
    """Run the methods of ``cfg`` on every slice of ``paths`` and write the outputs to ``out_dir``."""
    configs = cfg.configs()  # every method checked (weights found) before any work
    labels = tuple(configs)
    if cfg.reference_method is not None and cfg.reference_method not in configs:
        raise InputError(f"reference method '{cfg.reference_method}' is not among the methods {list(labels)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reuse = cfg.reuse or cfg.cache is not None
    store = Path(cfg.cache) if cfg.cache is not None else out
    store.mkdir(parents=True, exist_ok=True)
    rows, figures = [], []
    stored = _stored_rows(store) if reuse else {}
    for path in paths:
        raw = read_raw(path)
        for s in raw.slices:
            ref = read_ground_truth(path, s.slice_index, frames=s.n_frames)
            if ref is None:
                raise InputError(f"{path}: no ground truth for slice {s.slice_index} (/dataset/ground_truth, "
                                 "or the ISMRMRD tool's /dataset/phantom with /dataset/csm); evaluate needs it")
            challenge_crop = cmrxrecon_crop_size(ref.shape[-2:])
            crop = challenge_crop if cfg.crop else None
            centre = _crop_label(challenge_crop)
            figure = cfg.figures and (cfg.figure_slices is None or s.slice_index in cfg.figure_slices)
            keys = {m: _row_key(path, s.slice_index, rc, crop) for m, rc in configs.items()} if reuse else {}
            images = {m: _image_path(cfg.cache, k) for m, k in keys.items()} if cfg.cache is not None else {}
            cached = {m for m, p in images.items() if p.is_file()}
            scored = {m for m in keys if _complete(stored.get(keys[m]), centre)}
            # run what has no row, or whose row is stale without a cached image, or lacks the image figures need
            todo = {m: rc for m, rc in configs.items()
                    if keys.get(m) not in stored or (m not in scored and m not in cached)
                    or (figure and m not in cached)}
            recs, seconds, t_maps = run_methods(s, todo) if todo else ({}, {}, 0.0)
            for m in configs:
                note = ""
                if m in recs:
                    row = {"file": str(path), "slice": s.slice_index, "method": m, "seconds": seconds[m],
                           "seconds_maps": t_maps, **_scores(ref, recs[m], crop)}
                    if reuse:
                        _store_row(store, keys[m], row)
                    if m in images:
                        np.save(images[m], np.abs(recs[m]).astype(np.float32))
                else:
                    row = dict(stored[keys[m]])
                    image = np.load(images[m]) if m in cached else None
                    if m not in scored:  # a stored row scored before a metric changed: rescore its image
                        row.update(_scores(ref, image, crop))
                        _store_row(store, keys[m], row)
                        note = "  (stored, rescored)"
                    else:
                        note = "  (stored)"
                    if figure:
                        recs[m] = image
                rows.append(row)
                log(f"{Path(path).name} slice {s.slice_index}: {LABELS.get(m, m):<12} "
                    f"PSNR {row['psnr']:6.2f} dB  SSIM {row['ssim']:.4f}  {row['seconds']:6.2f} s" + note)
            if figure:
                fig = out / f"{Path(path).stem}_slice{s.slice_index}.png"
                comparison_figure(ref, {LABELS.get(m, m): recs[m] for m in configs if m in recs}, fig, frame=0,
                                  title=f"{Path(path).name} slice {s.slice_index}")
                figures.append(str(fig))
    summary = _summary(rows, labels)
    stats = _stats(rows, labels, cfg)
    _write_csv(out / "results.csv", rows)
    _write_csv(out / "table.csv", summary)
    _write_csv(out / "stats.csv", stats)
    (out / "table.md").write_text(_markdown(summary, stats, len({(r['file'], r['slice']) for r in rows})))
    ordering = [r["method"] for r in sorted(summary, key=lambda r: r["psnr_mean"])]
    log("PSNR ordering (low -> high): " + " < ".join(LABELS.get(m, m) for m in ordering))
    return {"rows": rows, "summary": summary, "stats": stats, "figures": figures,
            "ordering": ordering, "table": str(out / "table.md")}


ROWS = "rows.jsonl"


def _row_key(path: str | Path, slice_index: int, rc: ReconConfig, crop) -> str:
    """What decides a row: the file (path, size, mtime), the slice, the crop, the method's
    settings with the weights hash for a learned one, the method's defaults (a changed
    default recomputes its rows) and the coil-map estimator's defaults."""
    from recon.coils.espirit import EspiritOptions
    from recon.methods import method_options
    from recon.weights import weights_info

    st = Path(path).stat()
    weights = rc.weights()
    sha = ""
    if weights:  # the weights file's hash, and the parameter-free model settings that are switched on
        info = weights_info(weights)
        crunet = info.config.crunet if info.config.name == "crunet" else None
        sha = info.sha256 + "".join(f" {f}" for f in MODEL_OFF_BY_DEFAULT if crunet is not None and getattr(crunet, f))
    defaults = {k: v for k, v in method_options(rc.method).items() if k != "progress"}
    maps = repr(EspiritOptions()) if rc.coil_method == "espirit" else rc.coil_method  # the maps' defaults too
    return json.dumps([str(Path(path).resolve()), st.st_size, st.st_mtime_ns, int(slice_index), crop,
                       _config_key(replace(rc, series_index=0)), sha, repr(defaults), maps], default=str)


#: Parameter-free CRUNet-MR settings (``config.yaml`` of the weights, not their file) that are off
#: by default: a row of weights with one of them on is keyed apart from the same weights without it.
MODEL_OFF_BY_DEFAULT = ("mean_consistency",)
#: ReconConfig settings that are off by default: they enter a row's key only when set, so that
#: adding one to the config keeps every row computed before it (they are all "off" rows).
OFF_BY_DEFAULT = ("virtual_coils",)


def _config_key(rc: ReconConfig) -> str:
    """``repr(rc)`` without the :data:`OFF_BY_DEFAULT` settings left at their default."""
    parts = [f"{f.name}={getattr(rc, f.name)!r}" for f in fields(rc)
             if not (f.name in OFF_BY_DEFAULT and getattr(rc, f.name) == f.default)]
    return f"{type(rc).__name__}({', '.join(parts)})"


def _crop_label(crop) -> str:
    """``"HxW"``: how a row records the centre crop its ``centre_*`` scores used."""
    return f"{int(crop[0])}x{int(crop[1])}"


def _complete(row: dict | None, centre: str) -> bool:
    """Whether a stored row holds every score of :data:`ROW_SCORES`, the centre ones on ``centre``."""
    return row is not None and all(k in row for k in ROW_SCORES) and row.get("centre_crop") == centre


def _image_path(cache: str | Path, key: str) -> Path:
    """Where the cache keeps the magnitude of the reconstruction a row ``key`` describes."""
    import hashlib

    return Path(cache) / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"


def _stored_rows(out: Path) -> dict[str, dict]:
    rows = {}
    path = out / ROWS
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
                rows[entry["key"]] = entry["row"]
            except (ValueError, KeyError, TypeError):  # a line cut by an interrupted run
                continue
    return rows


def _store_row(out: Path, key: str, row: dict) -> None:
    with open(out / ROWS, "a") as f:
        f.write(json.dumps({"key": key, "row": row}, default=float) + "\n")


def _scores(ref: np.ndarray, rec: np.ndarray, crop) -> dict[str, float | str]:
    """CMRxRecon metrics and the dynamic/static split of one reconstruction ``[t, y, x]``.

    ``crop`` (None: the full field of view) decides the main metrics; ``centre_psnr`` and
    ``centre_ssim`` are always those of the challenge's centre crop
    (:func:`recon.metrics.frames.cmrxrecon_crop_size`), so a full-FOV table also tells how
    the region CMRxRecon scores fares (the field of view's edges, where coil maps fade and
    objects cross the phase-encode edge, weigh on the full-FOV numbers)."""
    scores = summarise(ref, rec, crop)
    try:
        scores.update(region_split_metrics(ref, rec, crop=crop))
    except InputError as exc:  # a series without motion has no dynamic region
        scores["region_split_unavailable"] = str(exc)
    centre = cmrxrecon_crop_size(np.shape(ref)[-2:])
    scores["centre_psnr"] = float(np.mean(psnr(ref, rec, centre)))
    scores["centre_ssim"] = float(np.mean(ssim(ref, rec, centre)))
    scores = {k: v for k, v in scores.items() if isinstance(v, float)}
    scores["centre_crop"] = _crop_label(centre)  # stored rows scored on another crop are rescored
    return scores


def _summary(rows: list[dict], methods) -> list[dict]:
    out = []
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        entry = {"method": m, "n_slices": len(sel)}
        for k in METRICS:
            vals = [r[k] for r in sel if k in r]
            if vals:
                entry[f"{k}_mean"] = float(np.mean(vals))
                entry[f"{k}_std"] = float(np.std(vals))
        out.append(entry)
    return out


def _stats(rows: list[dict], labels: tuple[str, ...], cfg: EvalConfig) -> list[dict]:
    ref = cfg.reference_method or labels[-1]
    if len(labels) < 2:
        return []
    out = []
    for metric in STAT_METRICS:
        if any(metric not in r for r in rows):  # e.g. DISTS without its VGG16 weights
            continue
        scores = {m: [r[metric] for r in rows if r["method"] == m] for m in labels}
        if len(scores[ref]) < 2:
            continue
        for entry in compare_methods(scores, ref, cfg.alpha):
            out.append({"metric": metric, **entry})
    return out


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _markdown(summary: list[dict], stats: list[dict], n_slices: int) -> str:
    def cell(r, k, fmt):
        return (fmt.format(r[f"{k}_mean"]) + " ± " + fmt.format(r[f"{k}_std"])) if f"{k}_mean" in r else "n/a"

    lines = [f"# Evaluation ({n_slices} slices)", "",
             "| method | PSNR dB | SSIM | HaarPSI | DISTS | PSNR dyn | PSNR static | PSNR centre | SSIM centre "
             "| s / slice |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        lines.append(f"| {LABELS.get(r['method'], r['method'])} | {cell(r, 'psnr', '{:.2f}')} | "
                     f"{cell(r, 'ssim', '{:.4f}')} | {cell(r, 'haarpsi', '{:.4f}')} | {cell(r, 'dists', '{:.4f}')} | "
                     f"{cell(r, 'dynamic_psnr', '{:.2f}')} | {cell(r, 'static_psnr', '{:.2f}')} | "
                     f"{cell(r, 'centre_psnr', '{:.2f}')} | {cell(r, 'centre_ssim', '{:.4f}')} | "
                     f"{cell(r, 'seconds', '{:.2f}')} |")
    lines += ["", "Per-frame metrics on magnitude images, each normalised to its maximum (CMRxRecon), "
              "averaged over frames, then mean ± std over slices. PSNR / SSIM centre: the same on the "
              "challenge's centre crop (CMRxRecon `run4Ranking.m`: two thirds of the field of view along "
              "the readout, half along the phase encodes), whatever the main columns use."]
    if not any("dists_mean" in r for r in summary):
        lines += ["DISTS: n/a — it needs VGG16 ImageNet weights, which are not downloaded: set "
                  "CRUNET_VGG16_WEIGHTS to a torchvision vgg16 checkpoint (vgg16-397923af.pth)."]
    if stats:
        lines += ["", "| metric | method vs reference | median diff | p | significant (Bonferroni) |",
                  "|---|---|---|---|---|"]
        for s in stats:
            lines.append(f"| {s['metric']} | {s['method']} vs {s['reference']} | "
                         f"{s['median_difference']:+.4f} | {s['p_value']:.3g} | "
                         f"{'yes' if s['significant'] else 'no'} (p < {s['alpha_corrected']:.4g}) |")
    return "\n".join(lines) + "\n"
