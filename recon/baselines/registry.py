"""Reconstruction methods by name, with option validation.

Classical methods (``zf``, ``sense``, ``lps``) and ``model``: a trained CRUNet-MR /
CRNN-MRI from a weights directory (option ``weights``, see recon.models.inference).

Every method maps a :class:`recon.problem.SliceProblem` to complex64 images
``[t, y, x]``; options are keyword arguments of the method function.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

from recon.baselines.lps import lps
from recon.baselines.sense import sense
from recon.baselines.zero_filled import zero_filled
from recon.errors import InputError
from recon.models.inference import learned
from recon.problem import SliceProblem

Method = Callable[..., torch.Tensor]

#: Name -> method. ``zf``: SENSE-combined zero-filled; ``sense``: CG-SENSE per frame;
#: ``lps``: low-rank plus sparse (Otazo 2015).
METHODS: dict[str, Method] = {
    "zf": zero_filled,
    "sense": sense,
    "lps": lps,
    "model": learned,
}


def method_options(name: str) -> dict[str, Any]:
    """Options of method ``name`` with their defaults (every parameter after the problem)."""
    fn = _lookup(name)
    params = list(inspect.signature(fn).parameters.values())[1:]
    return {q.name: q.default for q in params}


def _lookup(name: str) -> Method:
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown method '{name}'; valid methods: {', '.join(sorted(METHODS))}") from None


def run_method(name: str, p: SliceProblem, **options: Any) -> torch.Tensor:
    """Reconstruct ``p`` with method ``name``.

    Parameters
    ----------
    name : a key of :data:`METHODS`.
    p : the slice problem.
    **options : keyword options of that method (e.g. ``lam`` for ``sense``,
        ``lambda_l``/``lambda_s``/``n_iter``/``tol``/``progress`` for ``lps``).

    Returns
    -------
    complex64 tensor ``[t, y, x]``.

    Raises
    ------
    InputError : unknown method name or unknown option (the message lists the valid ones).
    """
    fn = _lookup(name)
    valid = method_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(valid) if valid else "none"
        raise InputError(f"method '{name}': unknown option(s) {', '.join(unknown)}; valid options: {listed}")
    return fn(p, **options)
