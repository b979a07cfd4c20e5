"""Paired significance tests between reconstruction methods, as in the paper.

Each method is compared with one reference method (the paper: CRUNet-MR w/ CA) by a
two-sided Wilcoxon signed-rank test on paired per-slice scores, with a Bonferroni
correction: significance needs ``p < alpha / m`` for ``m`` comparisons (4 at 0.05 gives
the paper's p < 0.0125).
"""

from __future__ import annotations

from typing import Mapping, Union

import numpy as np
import torch
from scipy.stats import wilcoxon

from recon.errors import InputError

__all__ = ["compare_methods"]


def _scores(name: str, values: Union[np.ndarray, torch.Tensor, list]) -> np.ndarray:
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    try:
        arr = arr.astype(np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"scores of {name!r}: not numeric ({exc})") from exc
    if not np.isfinite(arr).all():
        raise InputError(f"scores of {name!r}: contain non-finite values (e.g. an inf PSNR)")
    return arr


def compare_methods(scores: Mapping[str, Union[np.ndarray, torch.Tensor, list]],
                    reference_method: str, alpha: float = 0.05) -> list[dict]:
    """Wilcoxon signed-rank test of every method against ``reference_method``.

    scores: method name -> per-slice scores [n] (same slices, same order, for every
    method). Returns one dict per other method, in the order of ``scores``:
    ``method``, ``reference``, ``n``, ``median_difference`` (median of method minus
    reference; its sign says which is higher), ``statistic``, ``p_value`` (two-sided),
    ``alpha_corrected`` (= alpha / number of comparisons), ``significant``
    (``p_value < alpha_corrected``). All-zero differences give p = 1.
    """
    if reference_method not in scores:
        raise InputError(f"reference method {reference_method!r} is not among the scored methods "
                         f"{sorted(scores)}")
    if len(scores) < 2:
        raise InputError("compare_methods: need the reference method and at least one other method")
    if not (0.0 < alpha < 1.0):
        raise InputError(f"compare_methods: alpha must lie in (0, 1), got {alpha}")
    ref = _scores(reference_method, scores[reference_method])
    if ref.size < 1:
        raise InputError(f"scores of {reference_method!r}: empty")
    others = [m for m in scores if m != reference_method]
    alpha_corrected = alpha / len(others)
    results = []
    for method in others:
        vals = _scores(method, scores[method])
        if vals.shape != ref.shape:
            raise InputError(f"scores of {method!r}: {vals.size} values but {ref.size} for "
                             f"{reference_method!r}; the test needs paired per-slice scores")
        diff = vals - ref
        if np.all(diff == 0):
            statistic, p_value = 0.0, 1.0
        else:
            res = wilcoxon(vals, ref, alternative="two-sided")
            statistic, p_value = float(res.statistic), float(res.pvalue)
        results.append({
            "method": method,
            "reference": reference_method,
            "n": int(ref.size),
            "median_difference": float(np.median(diff)),
            "statistic": statistic,
            "p_value": p_value,
            "alpha_corrected": alpha_corrected,
            "significant": bool(p_value < alpha_corrected),
        })
    return results
