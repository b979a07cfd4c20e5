"""Starting a training run from installed weights (``train.init_weights``).

The weights are copied as they are (fine-tuning), widened to more channels
(``train.init_widen``, :mod:`recon.models.widen`), given the 1x1 bank projection
(``train.init_pointwise_bank``, :mod:`recon.models.reproject`) or, for a run with
``data_consistency: noise`` from weights trained with hard data consistency, copied with
each cascade's noise weight at its initial value, for a run with ``data_consistency: cg`` from
weights trained with ``noise`` (or ``cg`` with other ``cg_iterations``), copied as they are but
each cascade's tau at the CG start (:data:`recon.models.crunet.CG_TAU_INIT`), or, for a run with ``composite_input``
from weights without it, copied with each cascade's composite head at zero (the run starts
as the source network exactly); the run records which
weights it started from (name, folder, SHA-256, architecture) for its card.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from recon.errors import InputError
from recon.train.config import RunConfig


def init_from_weights(target: torch.nn.Module, cfg: RunConfig, ref: str) -> dict:
    """Copy the parameters of weights ``ref`` into ``target``, the run ``cfg``'s freshly built
    model (fine-tuning; widened or with the bank re-projected when ``cfg.train`` asks);
    returns what the run records of them (name, folder, SHA-256, architecture)."""
    from recon.models.config import PARAMETER_FREE_FIELDS, same_parameters
    from recon.models.reproject import pointwise_bank_into
    from recon.models.widen import widen_into
    from recon.weights import load_weights, weights_info

    info = weights_info(ref)
    model, widen = cfg.model, cfg.train.init_widen
    pointwise = cfg.train.init_pointwise_bank
    if pointwise:
        if model.name != "crunet" or info.config.name != "crunet" or model.crunet.bank_projection != "1x1" \
                or info.config.crunet.bank_projection != "3x3" or model.crunet.fusion == "none":
            raise InputError(f"init_pointwise_bank turns a CRUNet-MR bank's 3x3 projection into this run's 1x1 "
                             f"one; init_weights {ref!r} are {info.describe()}, the run's model "
                             f"{model.name} (fusion / projection: {model.crunet.fusion} / "
                             f"{model.crunet.bank_projection})")
        model = replace(model, crunet=replace(model.crunet, bank_projection="3x3"))
    if widen:
        if model.name != "crunet" or info.config.name != "crunet":
            raise InputError(f"init_widen widens CRUNet-MR weights into a CRUNet-MR; init_weights {ref!r} "
                             f"is {info.config.name}, the run's model {model.name}")
        c_old, c_new = info.config.crunet.channels, model.crunet.channels  # fewer: widen_into refuses
        model = replace(model, crunet=replace(model.crunet, channels=c_old))
    # hard -> noise-weighted data consistency: the same network plus one tau per cascade (kept at its init)
    noise_dc = (model.name == "crunet" and info.config.name == "crunet"
                and model.crunet.data_consistency == "noise" and info.config.crunet.data_consistency == "hard")
    if noise_dc:
        model = replace(model, crunet=replace(model.crunet, data_consistency="hard"))
    # noise-weighted -> CG data consistency: the same parameters (tau_i gives lam_i = sigma^2 / tau_i^2)
    cg_dc = (model.name == "crunet" and info.config.name == "crunet"
             and model.crunet.data_consistency == "cg" and info.config.crunet.data_consistency in ("noise", "cg"))
    if cg_dc:
        model = replace(model, crunet=replace(model.crunet, data_consistency=info.config.crunet.data_consistency,
                                              cg_iterations=info.config.crunet.cg_iterations,
                                              cg_lam_floor=info.config.crunet.cg_lam_floor))
    # the composite input added: the same network plus one head per cascade, zero at the start
    composite = (model.name == "crunet" and info.config.name == "crunet"
                 and model.crunet.composite_input != "none" and info.config.crunet.composite_input == "none")
    if composite:
        if widen or pointwise:
            raise InputError("composite_input is added to installed weights by plain fine-tuning; "
                             "not together with init_widen or init_pointwise_bank")
        model = replace(model, crunet=replace(model.crunet, composite_input="none"))
    if not same_parameters(info.config, model):
        raise InputError(f"init_weights {ref!r} ({info.describe()}) were trained with another model "
                         f"config than this run's model section; copy their config.yaml into `model` "
                         f"(only {', '.join(PARAMETER_FREE_FIELDS)} may differ"
                         + (", and channels with init_widen)" if widen else
                            ", and the bank projection with init_pointwise_bank)" if pointwise else ")"))
    source, _ = load_weights(info.directory)
    # noise -> cg: tau means another error there (the k-space weight's), so it keeps the fresh CG model's start
    tau_start = (target.dc_log_tau.detach().clone() if cg_dc and info.config.crunet.data_consistency == "noise"
                 else None)
    record = {"ref": str(ref), "directory": str(info.directory), "sha256": info.sha256,
              "model": info.describe()}
    if widen:
        widen_into(source, target, c_old, c_new, keep_init=("dc_log_tau",) if noise_dc else ())
        record["widened"] = [c_old, c_new]
        if noise_dc:
            record["data_consistency"] = ["hard", "noise"]
    elif pointwise:
        pointwise_bank_into(source, target)
        record["bank_projection"] = ["3x3", "1x1"]
    elif noise_dc or composite:
        missing, unexpected = target.load_state_dict(source.state_dict(), strict=False)
        new = {name for name, _ in target.named_parameters()
               if (noise_dc and name == "dc_log_tau") or (composite and ".composite_head." in name)}
        if unexpected or set(missing) != new:  # exactly the parameters the source model lacks
            raise InputError(f"init_weights {ref!r}: parameters {sorted(missing)} missing, {sorted(unexpected)} "
                             f"unexpected; this run adds only {sorted(new)}")
        if noise_dc:
            record["data_consistency"] = ["hard", "noise"]
        if composite:
            with torch.no_grad():  # the run starts as the source network exactly
                for name, param in target.named_parameters():
                    if ".composite_head." in name:
                        param.zero_()
            record["composite_input"] = ["none", cfg.model.crunet.composite_input]
    else:
        target.load_state_dict(source.state_dict())
    if tau_start is not None:
        with torch.no_grad():
            target.dc_log_tau.copy_(tau_start)
        record["data_consistency"] = ["noise", "cg"]
    return record
