"""``crunet report``: the paper's evaluation reproduced in one command.

Data: the held-out real series shipped in ``data/`` (Sunnybrook SCD0000401, all 11 slices,
never trained on: ``weights/SPLIT.md``), simulated through the project's one forward model
(:func:`recon.simulate.cine.simulate_to_file`) with the demo's held-out acquisition
(:data:`crunet.demo.DEFAULT_CONFIG`: 15 ``dipole`` coils, SNR 50, line-by-line order,
fixed seed) into one ISMRMRD raw file with ground truth per R. Only the mask changes
between the R values.

Methods: ``zf``, ``sense``, ``lps`` and every learned method of :data:`LEARNED` whose
weights are installed; the others are reported as not shipped yet (never dropped
silently). Each R is one :func:`crunet.evaluate.evaluate` run into ``<out>/r<R>/``
(``table.md``, ``results.csv``, ``stats.csv``, the per-slice figures: heart-centred crops,
error maps, x-t profiles), tested against ``crunet_ca``. This module adds the data, the
method list, the dynamic/static region figure (``<out>/regions.png``) and
``<out>/report.json``; :mod:`crunet.report_markdown` writes the index ``<out>/README.md``.
"""

from __future__ import annotations

import json
import shlex
import tempfile
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from recon.config import Settings
from recon.errors import InputError
from recon.machine import Device
from crunet.report_models import BANK_DEPTH, LEARNED, NETWORK_ALONE, REFERENCE, depth_line
from recon.simulate.realdata import HELDOUT_SERIES

CLASSICAL = ("zf", "sense", "lps")
#: BART's temporal TV, compared when the ``bart`` tool is installed (the field's CS reference).
BART = "bart_tv"
ACCELERATIONS = (4, 8, 24)
#: The report's default series: every slice of the held-out patient (11; the demo uses 2 of them),
#: enough for the Wilcoxon signed-rank test to reach a Bonferroni-corrected threshold.
REPORT_SERIES = HELDOUT_SERIES
QUICK_R = 8
RAW_NAME = "heldout_r{r}.h5"


@dataclass(frozen=True)
class ReportConfig(Settings):
    """out : output folder (markdown, PNG, CSV, JSON).
    accelerations : R values; None = :data:`ACCELERATIONS` (``(8,)`` with ``quick``).
    quick : one R (the first given, else 8) and one slice: a check of the path, not a result.
    series : ``.npz`` cine series of a held-out patient; None = the shipped ``data/`` series.
    scan : the simulated acquisition (source, slices and R are set here); None = the demo's.
    device : ``auto``, ``cpu`` or ``cuda``.
    raw_dir : keep the raw files there; None = a temporary folder, removed at the end (or
        ``<cache>/raw`` with a ``cache``).
    cache : keep every row and reconstruction there (``crunet evaluate``'s cache, one folder
        per R) and the raw files (re-simulated only when their acquisition changes): a second
        report runs only the methods or weights that are new. None = run everything.
    alpha : family-wise significance level (Bonferroni over the compared methods).
    """

    WHERE = "report settings"

    out: str = "docs/results"
    accelerations: tuple[int, ...] | None = None
    quick: bool = False
    series: str | None = None
    scan: object | None = None  # recon.simulate.cine.SimulationConfig
    device: Device = "auto"
    raw_dir: str | None = None
    alpha: float = 0.05
    cache: str | None = None

    def rs(self) -> tuple[int, ...]:
        """The R values this report runs."""
        rs = tuple(int(r) for r in (self.accelerations or ((QUICK_R,) if self.quick else ACCELERATIONS)))
        return rs[:1] if self.quick else rs

    def check(self) -> None:
        """R values, alpha and the series file (types, the device included, by :meth:`validate`)."""
        if self.accelerations is not None and not self.accelerations:
            raise InputError("--accelerations: give at least one R")
        rs = self.rs()
        if any(r < 2 for r in rs) or len(set(rs)) != len(rs):
            raise InputError(f"--accelerations: R values must be distinct integers >= 2, got {list(rs)}")
        if not 0.0 < self.alpha < 1.0:
            raise InputError(f"alpha must lie in (0, 1), got {self.alpha}")
        if self.series is not None and not Path(self.series).is_file():
            raise InputError(f"--series {self.series}: no such file (a .npz cine series of a held-out patient)")

    def command(self) -> str:
        """The command line that makes this report (without ``--cache``, which changes no number)."""
        args = ["crunet", "report", "--out", str(self.out)]
        if self.accelerations is not None:
            args += ["--accelerations", *map(str, self.accelerations)]
        args += ["--quick"] if self.quick else []
        args += ["--series", str(self.series)] if self.series else []
        args += ["--device", self.device] if self.device != "auto" else []
        args += ["--raw-dir", str(self.raw_dir)] if self.raw_dir else []
        return shlex.join(args)


def classical_methods() -> tuple[str, ...]:
    """:data:`CLASSICAL`, and :data:`BART` when the ``bart`` tool is installed."""
    from recon.coils.bart_io import bart_executable

    return CLASSICAL + ((BART,) if bart_executable() is not None else ())


def learned_methods() -> tuple[list[str], dict[str, str], list[str]]:
    """``(installed, missing, others)``: the :data:`LEARNED` names whose weights are installed
    and check (manifest, SHA-256), ``name -> why not`` for the rest, and installed weights names
    outside the paper's comparison."""
    from recon.weights import available_weights, find_weights, weights_info

    installed, missing = [], {}
    for name in LEARNED:
        if find_weights(name) is None:
            missing[name] = "not shipped yet"
            continue
        try:
            weights_info(name)
        except InputError as exc:
            missing[name] = f"installed but unusable: {exc}"
        else:
            installed.append(name)
    return installed, missing, [n for n in available_weights() if n not in LEARNED]


def read_series(series: Path) -> tuple[str, int]:
    """``(patient_id or "", slices)`` of a ``.npz`` with ``cine`` ``(slices, phases, H, W)`` or ``(phases, H, W)``."""
    try:
        with np.load(series) as f:
            if "cine" not in f.files:
                raise InputError(f"{series}: no 'cine' array (a cine series has cine (slices, phases, H, W))")
            patient = str(f["patient_id"]) if "patient_id" in f.files else ""
            shape = f["cine"].shape
    except (OSError, ValueError, AttributeError, zipfile.BadZipFile) as exc:
        raise InputError(f"{series}: not a readable .npz cine series ({exc})") from None
    if len(shape) not in (3, 4):
        raise InputError(f"{series}: cine has shape {shape}, expected (slices, phases, H, W) or (phases, H, W)")
    return patient, int(shape[0]) if len(shape) == 4 else 1


def check_heldout(series: Path, patient: str) -> str:
    """The held-out patient (``DataConfig.holdout``, ``weights/SPLIT.md``) that ``series`` shows:
    its stem, or its ``patient_id`` within a held-out stem. Anything else is an InputError."""
    from recon.train.config import DataConfig

    holdout = DataConfig().holdout
    for stem in holdout:
        if series.stem == stem or (patient and patient in stem):
            return patient or stem
    raise InputError(f"{series}: not a held-out patient (held out: {', '.join(holdout)}; weights/SPLIT.md); "
                     "the report scores only anatomy no shipped model was trained on")


def _acquisition_record(scan) -> str:
    """``scan`` (a SimulationConfig, or its stored record as a dict) as the JSON text a raw file's
    record holds, its ``source`` series reduced to the file name."""
    from dataclasses import asdict

    fields = dict(scan) if isinstance(scan, dict) else asdict(scan)
    if fields.get("source"):
        fields["source"] = Path(str(fields["source"])).name
    return json.dumps(fields, sort_keys=True, default=str)


def write_raw_files(raw_dir: Path, scan, accelerations: tuple[int, ...], log=print) -> dict[int, Path]:
    """One raw file ``raw_dir/heldout_r<R>.h5`` per R from ``scan`` (a SimulationConfig): ``{R: path}``.

    Each file's acquisition is written beside it (``.json``); a file whose record equals the
    acquisition asked for is kept as it is (so rows keyed by its modification time stay valid).
    The series is recorded by its file name, not its path: a cache stays valid for the same
    series in another checkout or worktree."""
    from recon.simulate.cine import simulate_to_file

    files = {}
    for r in accelerations:
        path = raw_dir / RAW_NAME.format(r=r)
        record = path.with_suffix(".json")
        wanted = _acquisition_record(replace(scan, acceleration=r))
        if path.is_file() and record.is_file() and _acquisition_record(json.loads(record.read_text())) == wanted:
            log(f"R={r}: kept {path} (same acquisition)")
            files[r] = path
            continue
        record.unlink(missing_ok=True)
        info = simulate_to_file(replace(scan, acceleration=r), path)
        record.write_text(wanted)
        log(f"simulated R={r}: {info['slices']} slices x {info['phases']} phases, {scan.n_coils} "
            f"{scan.coil_family} coils, SNR {scan.snr:g} -> {path}")
        files[r] = path
    return files


def unavailable_metrics(summaries: list[list[dict]]) -> dict[str, str]:
    """``metric -> reason`` for HaarPSI / DISTS when some table lacks them."""
    from recon.metrics import dists, piq_haarpsi

    rows = [row for summary in summaries for row in summary]
    reasons = {}
    if not all("haarpsi_mean" in r for r in rows):
        try:
            piq_haarpsi.load_piq_haarpsi()
            reasons["haarpsi"] = f"frames smaller than {piq_haarpsi.HAARPSI_MIN_SIZE}x{piq_haarpsi.HAARPSI_MIN_SIZE}"
        except RuntimeError as exc:
            reasons["haarpsi"] = str(exc)
    if not all("dists_mean" in r for r in rows):
        ok, reason = dists.dists_available()
        reasons["dists"] = f"frames smaller than {dists.MIN_SIZE}x{dists.MIN_SIZE}" if ok else reason
    return reasons


def figure_slices(n_slices: int) -> tuple[int, ...]:
    """The slices drawn as figures: the central two, the slices CMRxRecon ranks (one when there is one);
    every slice is scored in the tables."""
    return tuple(sorted({max(0, n_slices // 2 - 1), n_slices // 2} if n_slices > 1 else {0}))


def training_summary(name: str) -> str:
    """How installed weights ``name`` were trained, in a few words, from the files shipped with them:
    wrapped rows along y, the last run's steps (``metrics.csv``) and whether that run fine-tuned
    earlier weights (``train_config.yaml``: ``train.init_weights``; its card says how many steps before)."""
    import csv

    import yaml

    from recon.weights import weights_info

    info = weights_info(name)
    model = getattr(info.config, info.config.name)
    parts = [f"wrap rows {int(getattr(model, 'wrap_rows', 0))}"]
    metrics, train_cfg = info.directory / "metrics.csv", info.directory / "train_config.yaml"
    steps = None
    if metrics.is_file():
        with open(metrics, newline="") as f:
            rows = list(csv.DictReader(f))
        steps = int(float(rows[-1]["step"])) if rows and rows[-1].get("step") else None
    init = None
    if train_cfg.is_file():
        init = ((yaml.safe_load(train_cfg.read_text()) or {}).get("train") or {}).get("init_weights")
    if steps is not None:
        parts.append(f"{steps:,} steps" + (" fine-tuning earlier weights (more steps before: its CARD.md)"
                                           if init else ""))
    return ", ".join(parts)


def bank_depths(installed: list[str]) -> dict[str, int]:
    """``name -> K`` (0 = all earlier cascades) of the installed :data:`BANK_DEPTH` weights, from their config."""
    from recon.weights import weights_info

    return {n: int(weights_info(n).config.crunet.bank_depth) for n in BANK_DEPTH if n in installed}


def run_report(cfg: ReportConfig = ReportConfig(), log=print) -> dict:
    """Simulate, evaluate every R, draw the region figure and write ``report.json`` and ``README.md``."""
    from crunet.demo import DEFAULT_CONFIG, demo_series
    from crunet.evaluate import EvalConfig, evaluate
    from recon.inference import DEFAULT_REFINE
    from recon.machine import describe_machine, machine_line, resolve_device
    from recon.weights import weights_info

    cfg = cfg.validate()
    series = Path(cfg.series) if cfg.series else demo_series(REPORT_SERIES)
    patient_id, slices = read_series(series)
    patient = check_heldout(series, patient_id)
    n_slices = 1 if cfg.quick else slices
    scan = replace(cfg.scan or DEFAULT_CONFIG, source=str(series), n_slices=n_slices).validate()
    installed, missing, others = learned_methods()
    reference = REFERENCE if REFERENCE in installed else None
    methods = classical_methods() + tuple(installed) + ((NETWORK_ALONE,) if reference else ())
    device = str(resolve_device(cfg.device))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ecfg = EvalConfig(methods=methods, reference_method=reference, alpha=cfg.alpha, device=cfg.device,
                      figure_slices=figure_slices(n_slices))
    per_r: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="crunet_report_") as tmp:
        raw_dir = Path(cfg.raw_dir or (Path(cfg.cache) / "raw" if cfg.cache else tmp))
        raw_dir.mkdir(parents=True, exist_ok=True)
        files = write_raw_files(raw_dir, scan, cfg.rs(), log)
        for r, path in files.items():
            log(f"== R = {r}: {', '.join(methods)}")
            rcfg = replace(ecfg, cache=str(Path(cfg.cache) / f"r{r}")) if cfg.cache else ecfg
            res = evaluate([path], out / f"r{r}", rcfg, log=log)
            per_r[r] = {"summary": res["summary"], "stats": res["stats"] if reference else [],
                        "n": len({(x["file"], x["slice"]) for x in res["rows"]}),
                        "seconds_maps": float(np.mean([x["seconds_maps"] for x in res["rows"]])),
                        "table": str(Path(res["table"]).relative_to(out)),
                        "figures": [str(Path(f).relative_to(out)) for f in res["figures"]]}
        regions = _regions(files[cfg.rs()[0]], n_slices, out)
    depths = bank_depths(installed)
    bank_figure = _bank_figure(per_r, depths, out) if len(depths) >= 2 else None
    machine = describe_machine(device)
    training = {n: training_summary(n) for n in installed}
    report = {
        "command": cfg.command(), "quick": cfg.quick, "created": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine, "machine_line": machine_line(machine), "device": device,
        "data": {"series": series.name, "patient": patient, "slices": n_slices, "phases": scan.n_phases,
                 "matrix": list(scan.matrix), "coils": scan.n_coils, "coil_family": scan.coil_family,
                 "snr": scan.snr, "ordering": scan.ordering, "acs_lines": scan.n_acs,
                 "readout_oversampling": scan.readout_oversampling, "seed": scan.seed,
                 "raw_dir": str(cfg.raw_dir) if cfg.raw_dir else None},
        "methods": list(methods), "reference": reference, "missing": missing, "other_weights": others,
        "table_order": [m for m in CLASSICAL + (BART,) + LEARNED + (NETWORK_ALONE,) if m in methods or m in missing],
        "bank_names": list(BANK_DEPTH), "default_refine": DEFAULT_REFINE,
        "weights": {**{n: f"{weights_info(n).describe()}; {training[n]}" for n in installed},
                    **({NETWORK_ALONE: f"the same weights as `{REFERENCE}`, the network's images alone (refine=off)"}
                       if reference else {})},
        "training": training,
        "bank_depths": depths, "bank_figure": bank_figure, "alpha": cfg.alpha,
        "unavailable": unavailable_metrics([v["summary"] for v in per_r.values()]),
        "accelerations": per_r, "regions": regions,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    write_index(report, out / "README.md")
    log(f"report: {out / 'README.md'}")
    return report


def _bank_figure(per_r: dict[int, dict], depths: dict[str, int], out: Path) -> str | None:
    """Quality against the bank depth (the paper's Fig. 5) from each R's summary: ``bank_depth.png``."""
    from recon.figures import bank_depth_figure

    order, shipped = depth_line(depths)
    points, extra = {}, {}
    for r, res in per_r.items():
        rows = {row["method"]: row for row in res["summary"]}
        series = [(str(depths[n] or "all"), rows[n]) for n in order if n in rows]
        if len(series) >= 2:  # a depth whose every slice failed at this R has no row there
            points[r] = series
            if shipped in rows:
                extra[r] = (f"{shipped} (trained otherwise)", rows[shipped])
    if not points:
        return None
    bank_depth_figure(points, {r: per_r[r]["n"] for r in points}, out / "bank_depth.png",
                      title="CRUNet-MR w/ CA: bank depth K\n(mean over the slices ± standard error)", extra=extra)
    return "bank_depth.png"


def _regions(path: Path, n_slices: int, out: Path) -> dict:
    """The dynamic/static split of the ground truth ``[t, y, x]`` of every slice: figure and pixel shares."""
    from recon.figures import region_figure
    from recon.io.raw import read_reference
    from recon.metrics.regions import NOISE_MULTIPLE, dynamic_region

    refs = {f"slice {s}": read_reference(path, "ground_truth", s) for s in range(n_slices)}
    region_figure(refs, out / "regions.png", title="dynamic / static regions of the ground truth")
    regions = {k: dynamic_region(v) for k, v in refs.items()}  # (mask, threshold) per slice
    return {"figure": "regions.png", "noise_multiple": NOISE_MULTIPLE,
            "threshold": {k: t for k, (_, t) in regions.items()},
            "dynamic_share": {k: float(m.mean()) for k, (m, _) in regions.items()}}


def index(report: dict) -> str:
    """The whole ``README.md``: the pages' sections (:mod:`crunet.report_markdown`) and the paper's claims
    tested (:mod:`crunet.report_claims`)."""
    from crunet.report_claims import claims_section
    from crunet.report_markdown import (bank_section, figures_section, files_section, header, quality_section,
                                        regions_section)

    parts = [header(report), quality_section(report), figures_section(report), regions_section(report),
             bank_section(report), claims_section(report), files_section(report)]
    return "\n".join(line for part in parts for line in part).rstrip() + "\n"


def write_index(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(index(report))
    return path
