"""Build a reconstruction network from its :class:`ModelConfig`.

Every model maps ``(k [b, t, c, y, x], mask [b, t, y], maps [b, c, y, x])`` to complex
images ``[b, t, y, x]``. Model modules are imported only when their model is built,
so importing the registry is cheap and has no side effects.
"""

from __future__ import annotations

from torch import nn

from recon.errors import InputError
from recon.models.config import ModelConfig

MODEL_NAMES: tuple[str, ...] = ("crunet", "crnn", "promptmr")


def build_model(cfg: ModelConfig, **kwargs) -> nn.Module:
    """The network named by ``cfg.name``, built from its section of ``cfg``.

    ``crunet`` -> :class:`recon.models.crunet.CRUNetMR` (``cfg.crunet``);
    ``crnn`` -> :class:`recon.models.crnn.CRNNMRI` (``cfg.crnn``);
    ``promptmr`` -> :class:`recon.models.promptmr.PromptMR` (``cfg.promptmr``).
    ``kwargs`` go to the model's constructor (e.g. ``checkpoint=True`` for CRUNet-MR).
    """
    if cfg.name == "crunet":
        from recon.models.crunet import CRUNetMR

        return CRUNetMR(cfg.crunet, **kwargs)
    if cfg.name == "crnn":
        from recon.models.crnn import CRNNMRI

        return CRNNMRI(cfg.crnn, **kwargs)
    if cfg.name == "promptmr":
        from recon.models.promptmr import PromptMR

        return PromptMR(cfg.promptmr, **kwargs)
    raise InputError(f"unknown model {cfg.name!r}; known models: {', '.join(MODEL_NAMES)}")


def noise_kwargs(model: nn.Module, noise) -> dict:
    """``{"noise": noise}`` for a model that weighs data consistency by the noise
    (``uses_noise``; a DDP wrapper is looked through), else nothing: the keyword to call it with."""
    return {"noise": noise} if getattr(getattr(model, "module", model), "uses_noise", False) else {}
