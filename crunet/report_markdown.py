"""The sections of ``crunet report``'s index, ``<out>/README.md`` (put together by
:func:`crunet.report.index`), from the dict :func:`crunet.report.run_report` builds.

Sections: how it was made (command, machine, data, split, methods: run, not shipped yet),
1. the Fig. 1 style table per R (mean ± std over slices of PSNR, SSIM, HaarPSI, DISTS and
seconds per slice, a dagger where the Wilcoxon signed-rank test against ``crunet_ca``
passes its Bonferroni threshold, a note when n is too small for that), 2. the
qualitative figures, 3. the dynamic/static regions, 4. the feature-bank depth, 5. the
paper's claims checked against these numbers (:mod:`crunet.report_claims`), then the
files. Pure text: it reads nothing and computes no metric.
"""

from __future__ import annotations

import math
from pathlib import Path

from crunet.report_models import NETWORK_ALONE, depth_line
from recon.methods import LABELS

#: Display names (the paper's), by method name.
NAMES = {**LABELS, "crnn": "CRNN-MRI", "promptmr": "PromptMR",
         "crunet": "CRUNet-MR", "crunet_conv": "CRUNet-MR w/ Conv", "crunet_ca": "CRUNet-MR w/ CA",
         "crunet_ca_k2": "CRUNet-MR w/ CA, K=2", "crunet_ca_k3": "CRUNet-MR w/ CA, K=3",
         "crunet_ca_kall": "CRUNet-MR w/ CA, K=all (ablation recipe)",
         "crunet_3k": "CRUNet-MR (ablation recipe)", "crunet_conv_3k": "CRUNet-MR w/ Conv (ablation recipe)",
         "crnn_3k": "CRNN-MRI (ablation recipe)", NETWORK_ALONE: "CRUNet-MR w/ CA, network alone"}
CLASSICAL_NOTES = {"zf": "classical: SENSE-combined zero-filled",
                   "sense": "classical: CG-SENSE, Tikhonov weight from the measured noise",
                   "lps": "classical: L+S (Otazo 2015), thresholds from the measured noise",
                   "bart_tv": "classical: BART `pics -R T:1024:0:0.01 -i 50` (temporal total variation, BART's "
                              "default weight), our k-space and coil maps"}
#: (summary key, column title, format) of the quality table.
QUALITY = (("psnr", "PSNR dB", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"), ("haarpsi", "HaarPSI", "{:.4f}"),
           ("dists", "DISTS", "{:.4f}"), ("centre_psnr", "PSNR centre", "{:.2f}"),
           ("centre_ssim", "SSIM centre", "{:.4f}"), ("seconds", "s / slice", "{:.2f}"))
REGIONS = (("dynamic_psnr", "PSNR dynamic", "{:.2f}"), ("static_psnr", "PSNR static", "{:.2f}"),
           ("dynamic_ssim", "SSIM dynamic", "{:.4f}"), ("static_ssim", "SSIM static", "{:.4f}"))
DAGGER = "†"
METRIC_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "haarpsi": "HaarPSI", "dists": "DISTS"}


def label(name: str) -> str:
    """``CRUNet-MR w/ CA (crunet_ca)``."""
    return f"{NAMES[name]} (`{name}`)" if name in NAMES else f"`{name}`"


def cell(row: dict, key: str, fmt: str, dagger: bool = False) -> str:
    """``mean ± std`` of ``key`` in a summary row (``n/a`` when absent), with a dagger when significant."""
    if f"{key}_mean" not in row:
        return "n/a"
    return f"{fmt.format(row[key + '_mean'])} ± {fmt.format(row[key + '_std'])}" + (f" {DAGGER}" if dagger else "")


def min_pairs(alpha_corrected: float) -> int:
    """Smallest n for which a two-sided Wilcoxon signed-rank test on n pairs can give p < ``alpha_corrected``
    (its smallest p, all differences of one sign and no ties, is 2 / 2^n)."""
    return math.floor(1 - math.log2(alpha_corrected)) + 1


def power_note(n: int, m: int, alpha: float) -> str | None:
    """Why no dagger can appear with ``n`` slices and ``m`` comparisons, or None when one can."""
    if m < 1:
        return None
    if n < 2:
        return f"n = {n} slice: no significance test (the Wilcoxon signed-rank test needs at least 2 paired slices)."
    alpha_c = alpha / m
    p_min = 2.0 ** (1 - n)
    if p_min < alpha_c:
        return None
    return (f"n = {n} slices is too small for the test to reach the threshold: the smallest two-sided p of a "
            f"Wilcoxon signed-rank test on {n} pairs is {p_min:.3g}, not below {alpha:g} / {m} = {alpha_c:.3g}, so "
            f"no {DAGGER} can appear (n >= {min_pairs(alpha_c)} is needed: run `--series` with more slices of the "
            "held-out patient).")


def _significant(stats: list[dict]) -> set[tuple[str, str]]:
    return {(s["metric"], s["method"]) for s in stats if s["significant"]}


def rows_by_method(report: dict, r: int) -> dict[str, dict]:
    """Method -> its summary row (means and stds over the slices) at R = ``r``."""
    return {row["method"]: row for row in report["accelerations"][r]["summary"]}


def significance_lines(report: dict, res: dict) -> list[str]:
    """What the dagger means at one R, and why none can appear when n is too small."""
    ref, methods = report["reference"], report["methods"]
    if not ref:
        return [f"No significance test: the reference `crunet_ca` is {report['missing'].get('crunet_ca', 'missing')}."]
    m, tested = len(methods) - 1, {s["metric"] for s in res["stats"]}
    lines = []
    if res["n"] >= 2:
        names = ", ".join(METRIC_NAMES.get(k, k) for k, _, _ in QUALITY if k in tested) or "none"
        lines.append(f"{DAGGER}: differs from {label(ref)} by a two-sided Wilcoxon signed-rank test on the paired "
                     f"slices, p < {report['alpha']:g} / {m} (Bonferroni over {m} comparisons); tested: {names}.")
    note = power_note(res["n"], m, report["alpha"])
    return lines + ([note] if note else [])


def quality_section(report: dict) -> list[str]:
    """Section 1: one table per R, daggers, the n note, the n/a reasons."""
    missing = report["missing"]
    lines = ["## 1. Quality per R (Fig. 1 style)", "",
             "Per-frame metrics on magnitude images each normalised to its maximum (CMRxRecon), averaged over "
             "the frames of a slice, then mean ± std over the slices, on the whole field of view; PSNR / SSIM "
             "centre: the same on the region the challenge scores (`run4Ranking.m`: two thirds of the field of "
             "view along the readout, half along the phase encodes). s / slice: seconds of the method on one "
             f"slice on {report['device']} (coil maps excluded, given below); a row kept from an earlier run "
             "(`--cache`) keeps that run's time, and other work on the machine slows every method: compare "
             "times measured together (`crunet bench --what methods`).", ""]
    for r, res in report["accelerations"].items():
        rows, sig = rows_by_method(report, r), _significant(res["stats"])
        lines += [f"### R = {r} (n = {res['n']} slice{'s' if res['n'] != 1 else ''})", "",
                  "| method | " + " | ".join(t for _, t, _ in QUALITY) + " |", "|---" * (len(QUALITY) + 1) + "|"]
        for m in report["table_order"]:
            if m in rows:
                cells = [cell(rows[m], k, f, (k, m) in sig) for k, _, f in QUALITY]
            else:
                cells = [missing[m]] + ["–"] * (len(QUALITY) - 1)
            lines.append(f"| {label(m)} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += significance_lines(report, res)
        lines += [f"Coil maps (ESPIRiT from the ACS, shared by all methods): {res['seconds_maps']:.2f} s per slice.",
                  f"Files: [table.md]({res['table']}), [results.csv](r{r}/results.csv) (per slice), "
                  f"[stats.csv](r{r}/stats.csv) (every test), [table.csv](r{r}/table.csv).", ""]
    for metric, reason in report["unavailable"].items():
        lines.append(f"**{METRIC_NAMES.get(metric, metric)}: n/a** — {reason}.")
    return lines + [""]


def figures_section(report: dict) -> list[str]:
    """Section 2: the per-slice comparison figure of every R (the first one shown)."""
    lines = ["## 2. Qualitative comparison", "",
             "Heart-centred crops of the ground truth (reference), zero-filled and every method at frame 0, each "
             "titled with its PSNR / SSIM over the whole cine and the SSIM of the crop shown; |error| maps on "
             "one colour scale with a colour bar; "
             "x-t profiles along the image row through the ventricles (orange line), time downwards. Drawn for "
             "the central two slices (those CMRxRecon ranks); the tables score every slice.", ""]
    for r, res in report["accelerations"].items():
        if not res["figures"]:
            continue
        first, rest = res["figures"][0], res["figures"][1:]
        lines += [f"### R = {r}", "", f"![R = {r}, {Path(first).stem}]({first})", ""]
        if rest:
            lines += ["Other slices: " + ", ".join(f"[{Path(f).stem}]({f})" for f in rest), ""]
    return lines


def regions_section(report: dict) -> list[str]:
    """Section 3: the region masks figure and PSNR / SSIM per region, per R and method."""
    reg = report["regions"]
    shares = ", ".join(f"{k}: {100 * v:.1f} %" for k, v in reg["dynamic_share"].items())
    lines = ["## 3. Dynamic and static regions", "",
             f"The dynamic region is where the temporal standard deviation of the max-normalised ground-truth frames "
             f"exceeds {reg['noise_multiple']:g} x the noise of the series (measured per slice as the median temporal "
             f"standard deviation over the static body; `recon/metrics/regions.py`): the beating heart and its moving "
             f"boundaries. The static region is the rest. Dynamic share of the pixels: {shares}.", "",
             f"![dynamic and static regions]({reg['figure']})", "",
             "| R | method | " + " | ".join(t for _, t, _ in REGIONS) + " |", "|---" * (len(REGIONS) + 2) + "|"]
    for r in report["accelerations"]:
        rows = rows_by_method(report, r)
        for m in report["methods"]:
            lines.append(f"| {r} | {label(m)} | " + " | ".join(cell(rows[m], k, f) for k, _, f in REGIONS) + " |")
    return lines + [""]


def bank_section(report: dict) -> list[str]:
    """Section 4: K = all vs K = 3, 2 (CRUNet-MR w/ CA), or what is not shipped yet."""
    depths, missing = report["bank_depths"], report["missing"]
    lines = ["## 4. Feature-bank depth (CRUNet-MR w/ CA)", "",
             "The bank of cascade i holds the features of all earlier cascades (K = all) or of the K most recent."]
    absent = [n for n in report["bank_names"] if n not in depths]
    if absent:
        lines.append("Not in this report: " + "; ".join(f"{label(n)}: {missing.get(n, 'not shipped yet')}"
                                                          for n in absent) + ".")
    if len(depths) < 2:
        return lines + ["No comparison of depths is possible until at least two of them are installed "
                        "(`configs/cpu/crunet_ca_k2.yaml`, `configs/cpu/crunet_ca_k3.yaml`).", ""]
    line, shipped = depth_line(depths)
    training = report.get("training", {})
    trained = {n: training.get(n) for n in line}
    if len(set(trained.values())) > 1:
        lines += ["", "**The depths were not trained alike** (" + "; ".join(f"`{n}`: {t}" for n, t in trained.items())
                  + "): the differences below mix the bank's depth with the training."]
    else:
        lines += ["", "K = " + ", ".join(str(depths[n] or "all") for n in line)
                  + f" share the recipe and the steps ({next(iter(trained.values()))}): they compare the depth alone."]
    if shipped:
        lines.append(f"{label(shipped)} (K = all, the shipped model) was trained otherwise ({training.get(shipped)}); "
                     "the figure draws it beside the line.")
    if report.get("bank_figure"):
        lines += ["", f"![quality against the bank depth]({report['bank_figure']})"]
    lines += ["", "| R | model | K | PSNR dB | SSIM | HaarPSI | PSNR dynamic |", "|---|---|---|---|---|---|---|"]
    for r in report["accelerations"]:
        rows = rows_by_method(report, r)
        for n, k in depths.items():
            lines.append(f"| {r} | {label(n)} | {'all' if k == 0 else k} | {cell(rows[n], 'psnr', '{:.2f}')} | "
                         f"{cell(rows[n], 'ssim', '{:.4f}')} | {cell(rows[n], 'haarpsi', '{:.4f}')} | "
                         f"{cell(rows[n], 'dynamic_psnr', '{:.2f}')} |")
    return lines + [""]


def header(report: dict) -> list[str]:
    """Title, command, machine, data and split, the methods (run or not, and why)."""
    d = report["data"]
    title = "# CRUNet-MR evaluation on held-out real anatomy"
    if report["quick"]:
        title += " (quick check: one R, one slice; not a result)"
    lines = [title, "", f"Regenerate with `{report['command']}` (created {report['created']}).", "",
             f"Machine: {report['machine_line']}; computed on `{report['device']}`.", "",
             "## Data", "",
             f"Real anatomy: `{d['series']}`, patient {d['patient']} (Sunnybrook Cardiac Data, CC0), held out of every "
             "training run of the shipped weights (split: `weights/SPLIT.md`), "
             f"{d['slices']} slice{'s' if d['slices'] != 1 else ''} x {d['phases']} phases, matrix "
             f"{d['matrix'][0]} x {d['matrix'][1]}. Simulated through the project's one forward model "
             f"(`recon/simulate/cine.py`) with an acquisition no model was trained on: {d['coils']} coils of the "
             f"`{d['coil_family']}` model, image SNR {d['snr']:g}, `{d['ordering']}` line order, {d['acs_lines']} ACS "
             f"lines plus every R-th line (the same in every frame), {d['readout_oversampling']}x readout "
             f"oversampling, a noise scan, seed {d['seed']}. One ISMRMRD raw file per R ("
             + (f"kept in `{d['raw_dir']}`" if d["raw_dir"] else "temporary; the same command writes them again")
             + "); only the mask differs between them. The ground truth is the noise-free, fully sampled image.", "",
             "## Methods", "", "| method | status |", "|---|---|"]
    for m in report["methods"]:
        lines.append(f"| {label(m)} | {CLASSICAL_NOTES.get(m) or report['weights'].get(m, '')} |")
    for m, why in report["missing"].items():
        lines.append(f"| {label(m)} | **{why}** |")
    from crunet.validation import refine_line

    lines += ["", refine_line(report)]
    if report["other_weights"]:
        lines += ["", "Installed weights outside the paper's comparison (not run here; `crunet evaluate` takes them): "
                  + ", ".join(f"`{n}`" for n in report["other_weights"]) + "."]
    return lines + [""]


def files_section(report: dict) -> list[str]:
    lines = ["## Files", "", "- `README.md` (this index), `report.json` (every number above, machine-readable)",
             f"- `{report['regions']['figure']}`: the dynamic/static region masks"]
    for r, res in report["accelerations"].items():
        lines.append(f"- `r{r}/`: `crunet evaluate` at R = {r}: table.md, table.csv, results.csv, stats.csv, "
                     + ", ".join(f"`{Path(f).name}`" for f in res["figures"]))
    return lines + [""]
