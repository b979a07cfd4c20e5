"""Reconstruction methods by name, with option validation.

* classical methods: ``zf``, ``sense``, ``lps`` and ``bart_tv`` (BART's temporal TV, when
  BART is installed) (:data:`CLASSICAL`);
* ``model``: a trained CRUNet-MR / CRNN-MRI from any weights directory (option
  ``weights``, see :mod:`recon.inference`);
* any other name: installed trained weights of that name (``crunet_ca``, ``crunet``,
  ``crunet_conv``, ``crnn``), found by :func:`recon.weights.find_weights` in the
  weights search path (``$CRUNET_WEIGHTS_DIR``, then the project's ``weights/``).

Every method maps a :class:`recon.problem.SliceProblem` to complex64 images
``[t, y, x]``; options are keyword arguments of the method function (a named
learned method takes those of :func:`recon.inference.learned` but ``weights``:
the name fixes the weights, e.g. ``crunet_ca:precision=bf16``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, get_type_hints

import torch

from recon.baselines.bart_tv import bart_tv
from recon.baselines.lps import lps
from recon.baselines.sense import sense
from recon.baselines.zero_filled import zero_filled
from recon.config import check_keys, convert
from recon.errors import InputError
from recon.inference import learned
from recon.problem import SliceProblem

Method = Callable[..., torch.Tensor]

#: Classical methods. ``zf``: SENSE-combined zero-filled; ``sense``: CG-SENSE per frame;
#: ``lps``: low-rank plus sparse (Otazo 2015); ``bart_tv``: ``bart pics -R T`` (temporal total variation,
#: the external BART tool).
CLASSICAL: dict[str, Method] = {
    "zf": zero_filled,
    "sense": sense,
    "lps": lps,
    "bart_tv": bart_tv,
}

#: Display names of the classical methods (figures, tables; learned ones show their weights name).
LABELS: dict[str, str] = {"zf": "zero-filled", "sense": "SENSE", "lps": "L+S", "bart_tv": "BART TV"}

#: Methods with a fixed name: the classical ones and ``model`` (trained weights from a directory).
METHODS: dict[str, Method] = {**CLASSICAL, "model": learned}


def learned_weights(name: str) -> Path | None:
    """The weights directory of a learned method name (``crunet_ca``...), None for other names."""
    from recon.weights import find_weights

    if not isinstance(name, str) or name in METHODS:
        return None
    return find_weights(name)


def available_methods() -> list[str]:
    """Every method that runs here: classical, ``model`` and the installed weights names."""
    from recon.weights import available_weights

    return list(METHODS) + [n for n in available_weights() if n not in METHODS]


def check_method(name: str) -> str:
    """``name`` if it is a method that runs here; else an :class:`InputError` saying what to do."""
    from recon.weights import SHIPPED_WEIGHTS, available_weights, is_weights_name, missing_weights_message, \
        weights_search_path

    if isinstance(name, str) and (name in METHODS or learned_weights(name) is not None):
        return name
    if name in SHIPPED_WEIGHTS:
        raise InputError(f"method '{name}': {missing_weights_message(name)}")
    installed = ", ".join(available_weights()) or "none"
    searched = ", ".join(str(d) for d in weights_search_path())
    hint = "" if isinstance(name, str) and is_weights_name(name) else \
        " (a weights directory goes in weights=/--weights, with method model)"
    raise InputError(f"unknown method '{name}'{hint}; valid methods: {', '.join(sorted(METHODS))} "
                     f"(model needs weights=<directory or name>), or trained weights by name "
                     f"(installed: {installed}; searched {searched})")


def method_options(name: str) -> dict[str, Any]:
    """Options of method ``name`` with their defaults (every parameter after the problem)."""
    params = list(inspect.signature(_function(check_method(name))).parameters.values())[1:]
    fixed = () if name in METHODS else ("weights",)  # a named learned method: the name fixes the weights
    return {q.name: q.default for q in params if q.name not in fixed}


def _function(name: str) -> Method:
    """The function behind a method that runs here (installed weights names run :func:`learned`)."""
    return METHODS.get(name, learned)


def check_options(name: str, options: dict[str, Any]) -> None:
    """An :class:`InputError` for options that method ``name`` does not take (the message lists the valid
    ones) or whose value does not fit the method's annotation, by the one mechanism of :mod:`recon.config`."""
    where = f"method '{name}'"
    check_keys(where, options, method_options(name))
    hints = get_type_hints(_function(name))
    for key, value in options.items():
        if key in hints:
            convert(value, hints[key], f"{where}.{key}")


def run_method(name: str, p: SliceProblem, **options: Any) -> torch.Tensor:
    """Reconstruct ``p`` with method ``name``.

    Parameters
    ----------
    name : a key of :data:`METHODS`, or the name of installed trained weights (``crunet_ca``).
    p : the slice problem.
    **options : keyword options of that method (e.g. ``lam`` for ``sense``,
        ``lambda_l``/``lambda_s``/``n_iter``/``tol``/``progress`` for ``lps``,
        ``weights`` for ``model``).

    Returns
    -------
    complex64 tensor ``[t, y, x]``.

    Raises
    ------
    InputError : unknown method name, missing weights or unknown option (the message
        lists the valid ones).
    """
    check_options(name, options)
    if name in METHODS:
        return METHODS[name](p, **options)
    return learned(p, weights=str(learned_weights(name) or name), **options)
