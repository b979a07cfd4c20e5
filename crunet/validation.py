"""Validation that tells how a model carries over to data it was not trained on.

Two sets, both on the held-out patients (``DataConfig.holdout``) and written as ISMRMRD
raw files, so that every method runs through the same reader and pipeline as a user's
data (:func:`crunet.evaluate.evaluate`):

* ``val``: acquisitions from the training space (in distribution);
* ``xval``: acquisitions from the held-out space (a coil model, coil counts, a noise band
  and a line order training never saw).

Case ``i`` of a set is one slice of a held-out patient with one acquisition; the same
case is written at every R (only the mask changes), so the rows of the table compare
the accelerations on the same anatomy and acquisition. ``crunet validate`` writes the
files, runs every method and writes ``validation.md`` / ``validation.json``: per set and
R, the mean +- std of PSNR / SSIM / HaarPSI and seconds per slice, and the gap between
the two sets (how far in-distribution validation over-states quality elsewhere).
With ``paired_masks`` each case is written twice at every R, with the same scene, coils and
noise: once with the same lines in every frame (``r<R>_case<i>_fixed.h5``) and once with the
lattice moved one line per frame (``_shifted``); the report then gives every method's mean per
mask kind and what the moving mask gains it (how much of the other frames' lines it uses).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from recon.machine import describe_machine, machine_line
from recon.masks import CMRX_ACCELERATIONS
from recon.train.config import DataConfig
from recon.weights import DEFAULT_WEIGHTS

SETS = {"val": "held-out patient, training acquisitions", "xval": "held-out patient, held-out acquisitions"}
#: How the cases of a folder were made (a folder keeps its cases; another setting needs another folder).
CASES_RECORD = "cases.json"


def heldout_coils(cfg: DataConfig) -> str | None:
    """``"family xN[/M...]"`` when ``cfg``'s held-out set has another coil model than the default
    (:data:`recon.simulate.acquisition.HELDOUT_SPACE`), else None."""
    from recon.simulate.acquisition import HELDOUT_SPACE

    space = cfg.heldout_space
    if (space.coil_families, space.coil_counts) == (HELDOUT_SPACE.coil_families, HELDOUT_SPACE.coil_counts):
        return None
    return f"{'/'.join(space.coil_families)} x{'/'.join(str(c) for c in space.coil_counts)}"


def write_cases(out_dir: str | Path, cfg: DataConfig = DataConfig(), accelerations=CMRX_ACCELERATIONS,
                cases: int = 3, log=print, sets: tuple[str, ...] = tuple(SETS),
                paired_masks: bool = False) -> dict[str, dict[int, list[Path]]]:
    """Raw files ``<out>/<set>/r<R>_case<i>.h5`` (with ``paired_masks``: ``..._fixed.h5`` and
    ``..._shifted.h5``, module docstring) -> ``{set: {R: [paths]}}`` for each of ``sets``
    (existing files are kept untouched: adding an R to a folder writes only the new R's files, so
    the rows already computed on the others stay valid)."""
    from recon.errors import InputError
    from recon.simulate.cine import write_slice_file
    from recon.train.data import SimulatedCine
    from recon.train.samples import simulate_scene

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record, made, coils = out / CASES_RECORD, {"seam_rows": int(cfg.seam_rows)}, heldout_coils(cfg)
    if coils is not None:  # the default's record stays as folders made before have it
        made["heldout_coils"] = coils
    if paired_masks:
        made["paired_masks"] = True
    unknown = [name for name in sets if name not in SETS]
    if unknown or not sets:
        raise InputError(f"validation sets must be among {list(SETS)}, got {list(sets)}")
    if record.is_file() and json.loads(record.read_text()) != made:
        raise InputError(f"{out}: its cases were made with {record.read_text().strip()}, not {json.dumps(made)}; "
                         "use another --out")
    record.write_text(json.dumps(made) + "\n")
    files: dict[str, dict[int, list[Path]]] = {}
    for name in (n for n in SETS if n in sets):
        src = SimulatedCine(cfg, seed=0, split=name)
        (out / name).mkdir(parents=True, exist_ok=True)
        files[name] = {int(r): [] for r in accelerations}
        kinds = {"_fixed": False, "_shifted": True} if paired_masks else {"": None}
        for i in range(cases):
            paths = {(int(r), k): out / name / f"r{int(r)}_case{i}{k}.h5" for r in accelerations for k in kinds}
            files_needed = [p for p in paths.values() if not p.is_file()]
            if files_needed:
                rng = src.rng(0, 1000 + i)  # not the trainer's validation samples (0 .. val_samples - 1)
                acq = src.space.draw(rng, acceleration=int(accelerations[0]))
                scene = simulate_scene(cfg, src.magnitude(rng, acq.frames, acq.matrix), acq, rng)
                for (r, k), path in paths.items():
                    if path.is_file():  # kept as it is: its rows are keyed by the file's time (crunet.evaluate)
                        continue
                    shifted = {} if kinds[k] is None else {"shifted_mask": kinds[k], "calibration": "frame"}
                    write_slice_file(path, scene.sim, replace(acq, acceleration=r, **shifted))
                log(f"{name} case {i}: {acq.coil_family} x{acq.n_coils}, SNR {acq.snr:.0f}, {acq.matrix[0]}x"
                    f"{acq.matrix[1]}, {acq.frames} frames, {acq.ordering} order")
            for (r, _), path in paths.items():
                files[name][r].append(path)
    return files


#: Tikhonov weights tried for the oracle-tuned CG-SENSE row (the best per case, chosen with
#: the ground truth: an upper bound for SENSE that no user can reach without it). It spans
#: the automatic weight's range (0 .. ``MAX_LAM`` = 1): at very low or very high SNR the
#: best weight is above 0.1.
SENSE_GRID = (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
ORACLE = "sense (oracle lam)"
#: The challenge's centre-crop scores every evaluate row carries (crunet.evaluate._scores).
CENTRE_KEYS = ("centre_psnr", "centre_ssim")
#: The regions every comparison is made on: (name, prefix of its score keys).
REGIONS = (("full FOV", ""), ("centre", "centre_"))


def oracle_row(rows: list[dict], grid_labels: list[str]) -> dict:
    """Summary row of the best of ``grid_labels`` per slice, like evaluate's rows.

    The full-FOV metrics are those of the weight with the best PSNR of each slice, the
    centre metrics those of the weight with the best centre PSNR (each an oracle)."""
    import numpy as np

    entry: dict = {"method": ORACLE}
    for chooser, keys in (("psnr", ("psnr", "ssim", "haarpsi", "seconds")), ("centre_psnr", CENTRE_KEYS)):
        best: dict = {}
        for r in rows:
            if r["method"] in grid_labels and chooser in r:
                key = (r["file"], r["slice"])
                if key not in best or r[chooser] > best[key][chooser]:
                    best[key] = r
        if chooser == "psnr":
            entry["n_slices"] = len(best)
            entry["lam_chosen"] = sorted({b["method"].split("=", 1)[1] for b in best.values()})
        for k in keys:
            vals = [b[k] for b in best.values() if k in b]
            if vals:
                entry[f"{k}_mean"], entry[f"{k}_std"] = float(np.mean(vals)), float(np.std(vals))
    return entry


def run_validation(out_dir: str | Path, methods: tuple[str, ...], weights: tuple[str, ...] = (),
                   cfg: DataConfig = DataConfig(), accelerations=CMRX_ACCELERATIONS, cases: int = 3,
                   device: str = "auto", figures: bool = False, sense_grid: tuple[float, ...] = SENSE_GRID,
                   oracle_accelerations: tuple[int, ...] = (8,), sets: tuple[str, ...] = tuple(SETS),
                   paired_masks: bool = False, log=print) -> dict:
    """Write the cases, evaluate ``methods`` (+ ``weights`` dirs) per set and R, write the report.

    With a ``sense_grid``, CG-SENSE also runs at each of its weights at the R values of
    ``oracle_accelerations`` (each weight costs a SENSE run per case) and those tables
    gain the row :data:`ORACLE`: per case the best of them against the ground truth.
    Rows already computed in ``out_dir`` (same file, method settings and weights hash)
    are reused, so adding a method to a finished validation runs only that method."""
    from crunet.evaluate import EvalConfig, evaluate
    from recon.inference import DEFAULT_REFINE

    out = Path(out_dir)
    files = write_cases(out, cfg, accelerations, cases, log, sets=sets, paired_masks=paired_masks)
    grid = [f"sense:lam={lam:g}" for lam in sense_grid]
    reference = (list(methods) + [Path(w).name for w in weights])[-1]
    plain = EvalConfig(methods=tuple(methods), weights=tuple(weights), device=device, figures=figures,
                       reference_method=reference, reuse=True)
    with_grid = replace(plain, methods=tuple(methods) + tuple(grid))
    results: dict = {"methods": list(methods) + [Path(w).name for w in weights] + ([ORACLE] if grid else []),
                     "cases": cases, "sense_grid": list(sense_grid), "sets": {},
                     "machine": describe_machine(device), "load_at_start": os.getloadavg()[0],
                     "default_refine": DEFAULT_REFINE}
    coils = heldout_coils(cfg)
    if coils is not None:
        results["heldout_coils"] = coils
    results["paired_masks"] = paired_masks
    results["mask_kinds"] = {name: {r: [mask_kind(p) for p in paths] for r, paths in by_r.items()}
                             for name, by_r in files.items()}
    for name, by_r in files.items():
        results["sets"][name] = {}
        for r, paths in by_r.items():
            log(f"== {name} ({set_title(results, name)}), R = {r}")
            oracle = bool(grid) and r in oracle_accelerations
            res = evaluate(paths, out / name / f"r{r}", with_grid if oracle else plain, log=log)
            rows = {row["method"]: row for row in res["summary"] if row["method"] not in grid}
            if oracle:
                rows[ORACLE] = oracle_row(res["rows"], grid)
            for m, row in rows.items():  # per-case PSNR, in case order, for the worst-case checks
                if m != ORACLE:
                    for k in ("psnr", "centre_psnr"):
                        row[f"{k}_cases"] = [x[k] for x in res["rows"] if x["method"] == m and k in x]
            results["sets"][name][r] = rows
    (out / "validation.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    (out / "validation.md").write_text(markdown(results))
    return results


def mask_kind(path: str | Path) -> str:
    """``shifted`` when the first slice of a raw file samples other lines in some frame, else ``fixed``."""
    from recon.io.raw import read_raw

    mask = read_raw(path).slices[0].mask
    return "shifted" if bool((mask != mask[:1]).any()) else "fixed"


def load_results(out_dir: str | Path) -> dict:
    """``<out_dir>/validation.json`` as :func:`run_validation` returned it (R keys as ints)."""
    from recon.errors import InputError

    path = Path(out_dir) / "validation.json"
    if not path.is_file():
        raise InputError(f"{path}: no crunet validate report")
    results = json.loads(path.read_text())
    for key in ("sets", "mask_kinds"):
        if key in results:
            results[key] = {name: {int(r): v for r, v in by_r.items()} for name, by_r in results[key].items()}
    return results


def set_title(results: dict, name: str) -> str:
    """What set ``name`` of a report holds (:data:`SETS`, with the held-out coil model when not the default)."""
    coils = results.get("heldout_coils")
    return f"{SETS[name]}: {coils} coils" if name == "xval" and coils else SETS[name]


def _cell(row: dict, key: str, fmt: str) -> str:
    if f"{key}_mean" not in row:
        return "n/a"
    return f"{fmt.format(row[key + '_mean'])} ± {fmt.format(row[key + '_std'])}"


def refine_line(results: dict) -> str:
    """What a learned method's rows are: refined as every entry point runs it (the default
    ``refine`` the run recorded), or, for runs made before that default, the network alone."""
    default = results.get("default_refine")
    if default is None:
        return ("Learned methods: the network alone (this run predates the CG-SENSE refinement that every "
                "entry point now runs after the network by default).")
    return (f"Learned methods run as every entry point runs them: a name alone (e.g. `crunet_ca`) with the "
            f"default `refine={default}` (CG-SENSE around the network's images, `recon/refine.py`), "
            "`NAME:refine=off` the network alone.")


def markdown(results: dict) -> str:
    """The validation tables (one per set), the default model against the others and the
    in-distribution vs held-out gap, each on the full field of view and on the challenge's
    centre crop."""
    lines = [f"# Validation on held-out data ({results['cases']} cases per set and R)", "",
             "Full FOV: the whole reconstructed field of view. Centre: CMRxRecon's centre crop (two "
             "thirds of the field of view along the readout, half along the phase encodes; the challenge "
             "scores only this region). Both: "
             "per-frame magnitudes, each normalised to its own maximum.", ""]
    if "machine" in results:
        lines += [f"Seconds per slice: {machine_line(results['machine'])}, 1-minute load "
                  f"{results['load_at_start']:.1f} when the run started; rows reused from an earlier run keep "
                  "that run's times. Other work on the machine slows every method: compare times within one "
                  "table, not across runs.", ""]
    lines += [refine_line(results), ""]
    for name, by_r in results["sets"].items():
        lines += [f"## {name}: {set_title(results, name)}", "",
                  "| R | method | PSNR dB | SSIM | HaarPSI | PSNR centre | SSIM centre | s / slice |",
                  "|---|---|---|---|---|---|---|---|"]
        for r, rows in by_r.items():
            for m, row in rows.items():
                lines.append(f"| {r} | {m} | {_cell(row, 'psnr', '{:.2f}')} | {_cell(row, 'ssim', '{:.3f}')} | "
                             f"{_cell(row, 'haarpsi', '{:.3f}')} | {_cell(row, 'centre_psnr', '{:.2f}')} | "
                             f"{_cell(row, 'centre_ssim', '{:.3f}')} | {_cell(row, 'seconds', '{:.2f}')} |")
        lines.append("")
    sets = results["sets"]
    learned = [m for m in results["methods"] if m not in ("zf", "sense", "lps", ORACLE) and ":" not in m]
    if DEFAULT_WEIGHTS in learned:  # the default method is the one compared with the others
        learned.remove(DEFAULT_WEIGHTS)
        learned.insert(0, DEFAULT_WEIGHTS)
    for region, prefix in REGIONS:
        if learned:
            lines += _comparison(sets, learned[0], region, prefix)
    if learned and "mask_kinds" in results:
        lines += _by_mask(sets, results["mask_kinds"], learned[0])
    if results.get("paired_masks"):
        lines += _mask_gain(sets, results["mask_kinds"])
    if "val" in sets and "xval" in sets:
        lines += ["## In distribution minus held-out acquisitions (PSNR dB)", "",
                  "The two sets differ in difficulty (zero-filled differs too), so the gain over zero-filled",
                  "is the number that should track: val gain minus xval gain.", "",
                  "| region | R | method | gap | gain over zf, val | gain over zf, xval | val gain - xval gain |",
                  "|---|---|---|---|---|---|---|"]
        for region, prefix in REGIONS:
            key = f"{prefix}psnr_mean"
            for r in sets["val"]:
                zf_a = sets["val"][r].get("zf", {}).get(key)
                zf_b = sets["xval"].get(r, {}).get("zf", {}).get(key)
                for m in sets["val"][r]:
                    a, b = sets["val"][r][m].get(key), sets["xval"].get(r, {}).get(m, {}).get(key)
                    if a is None or b is None:
                        continue
                    gains = "n/a | n/a | n/a"
                    if m != "zf" and zf_a is not None and zf_b is not None:
                        gains = f"{a - zf_a:+.2f} | {b - zf_b:+.2f} | {(a - zf_a) - (b - zf_b):+.2f}"
                    lines.append(f"| {region} | {r} | {m} | {a - b:+.2f} | {gains} |")
        lines.append("")
    return "\n".join(lines)


def _comparison(sets: dict, ours_name: str, region: str, prefix: str) -> list[str]:
    """``ours_name`` minus each classical method, per set and R, on one region's metrics."""
    lines = [f"## {ours_name} against the others, {region} (PSNR dB, mean over cases)", "",
             "| set | R | - zero-filled (worst case) | - SENSE (auto) | - SENSE (oracle lam) | - L+S (auto) | "
             "SSIM - best classical |", "|---|---|---|---|---|---|---|"]
    psnr_key, ssim_key, cases_key = f"{prefix}psnr_mean", f"{prefix}ssim_mean", f"{prefix}psnr_cases"
    for name, by_r in sets.items():
        for r, rows in by_r.items():
            ours = rows.get(ours_name)
            if ours is None or psnr_key not in ours:
                continue

            def diff(m):
                return f"{ours[psnr_key] - rows[m][psnr_key]:+.2f}" if psnr_key in rows.get(m, {}) else "n/a"
            worst = "n/a"
            if "zf" in rows and ours.get(cases_key) and rows["zf"].get(cases_key):
                worst = f"{min(a - b for a, b in zip(ours[cases_key], rows['zf'][cases_key])):+.2f}"
            classical = [m for m in ("zf", "sense", "lps", ORACLE) if ssim_key in rows.get(m, {})]
            ssim = (f"{ours[ssim_key] - max(rows[m][ssim_key] for m in classical):+.3f}"
                    if classical and ssim_key in ours else "n/a")
            lines.append(f"| {name} | {r} | {diff('zf')} ({worst}) | {diff('sense')} | {diff(ORACLE)} | "
                         f"{diff('lps')} | {ssim} |")
    return lines + [""]


def _by_mask(sets: dict, kinds: dict, ours_name: str) -> list[str]:
    """``ours_name`` minus each classical method per set, R and mask kind (full FOV, per-case PSNR):
    masks that move from frame to frame let L+S take missing lines from other frames."""
    lines = [f"## {ours_name} against the others by mask: the same lines in every frame (fixed) or "
             "moving (shifted) (full FOV PSNR dB, mean over those cases)", "",
             "| set | R | mask | cases | - zero-filled | - SENSE (auto) | - L+S (auto) |", "|---|---|---|---|---|---|---|"]
    for name, by_r in sets.items():
        for r, rows in by_r.items():
            ours = rows.get(ours_name, {}).get("psnr_cases")
            labels = kinds.get(name, {}).get(r)
            if not ours or not labels or len(labels) != len(ours):
                continue
            for kind in ("fixed", "shifted"):
                idx = [i for i, k in enumerate(labels) if k == kind]
                if not idx:
                    continue

                def diff(m):
                    other = rows.get(m, {}).get("psnr_cases")
                    if not other or len(other) != len(ours):
                        return "n/a"
                    return f"{sum(ours[i] - other[i] for i in idx) / len(idx):+.2f}"
                lines.append(f"| {name} | {r} | {kind} | {len(idx)} | {diff('zf')} | {diff('sense')} | {diff('lps')} |")
    return lines + [""]


def _mask_gain(sets: dict, kinds: dict) -> list[str]:
    """Every method's mean full-FOV PSNR on the fixed and the shifted acquisitions of the same
    scenes (``paired_masks``), and the difference: what the other frames' lines give it."""
    lines = ["## The same scenes with a fixed and with a shifted mask (full FOV PSNR dB, mean over cases)", "",
             "| set | R | method | fixed | shifted | shifted - fixed |", "|---|---|---|---|---|---|"]
    for name, by_r in sets.items():
        for r, rows in by_r.items():
            labels = kinds.get(name, {}).get(r) or []
            for m, row in rows.items():
                cases = row.get("psnr_cases") or []
                if len(cases) != len(labels):
                    continue
                means = [sum(v for v, k in zip(cases, labels) if k == kind) / max(1, labels.count(kind))
                         for kind in ("fixed", "shifted")]
                lines.append(f"| {name} | {r} | {m} | {means[0]:.2f} | {means[1]:.2f} | {means[1] - means[0]:+.2f} |")
    return lines + [""]


def best_of(results: dict, set_name: str, r: int, methods: tuple[str, ...]) -> str | None:
    """The method with the highest mean PSNR among ``methods`` in one table (None if absent)."""
    rows = results["sets"].get(set_name, {}).get(r, {})
    scored = [(rows[m]["psnr_mean"], m) for m in methods if m in rows and "psnr_mean" in rows[m]]
    return max(scored)[1] if scored else None


