"""Parameter counts of the learned models, per part (``CRUNet-MR``: every cascade and the bank fusion)."""

from __future__ import annotations

from torch import nn


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def describe(model: nn.Module) -> str:
    """Parameter counts per part, one line each: every cascade, the bank fusion per cascade, the total."""
    from recon.models.crunet import CRUNetMR

    if not isinstance(model, CRUNetMR):
        return f"{type(model).__name__}: {parameter_count(model):,} parameters"
    cfg = model.cfg
    lines = [f"CRUNet-MR: {cfg.channels} channels, {cfg.cascades} cascades, fusion {cfg.fusion}"
             + (f" (bank depth {cfg.bank_depth or 'all'})" if cfg.fusion != "none" else "")
             + (f", CG data consistency ({cfg.cg_iterations} steps)" if cfg.data_consistency == "cg" else
                ", noise-weighted data consistency" if model.uses_noise else "")
             + ("" if cfg.composite_input == "none" else f", composite input ({cfg.composite_input})")
             + (", temporal mean consistency" if cfg.mean_consistency else "")]
    for i, casc in enumerate(model.cascades):
        lines.append(f"  cascade {i}: {parameter_count(casc):>12,}")
    if model.fusion is not None:
        for i, fus in enumerate(model.fusion, start=1):
            lines.append(f"  bank fusion, cascade {i} ({model.bank_size(i)} banked): {parameter_count(fus):>12,}")
        total_fusion = parameter_count(model.fusion)
    else:
        total_fusion = 0
    lines.append(f"  cascades total: {parameter_count(model.cascades):>12,}")
    lines.append(f"  bank/fusion total: {total_fusion:>12,}")
    if model.dc_log_tau is not None:
        lines.append(f"  data consistency (tau per cascade): {model.dc_log_tau.numel():>12,}")
    lines.append(f"  total: {parameter_count(model):>12,}")
    return "\n".join(lines)
