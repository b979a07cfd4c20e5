"""A trained CRUNet-MR with the 3x3 bank projection turned into one with a 1x1 projection.

The bank's 3x3 projection is most of what the feature bank costs; a pointwise one with
the channel attention folded into its weights costs a fraction (``recon.models.crunet``).
To move a long-trained model to the cheaper design without training it again from
scratch, each 1x1 projection starts as the sum of the 3x3 kernel's taps (the 3x3
projection's response to features that are constant over its 3x3 neighbourhood, i.e. its
average behaviour), every other weight is copied unchanged; fine-tuning then recovers
what the spatial context of the projection did. Not function-preserving: the images at
step 0 differ from the 3x3 model's where the features vary within a kernel's reach.

Used by the trainer's ``train.init_pointwise_bank`` (:mod:`recon.train.init`).
"""
from __future__ import annotations

import torch
from torch import nn

from recon.errors import InputError


@torch.no_grad()
def pointwise_bank_into(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source`` (a CRUNet-MR with ``bank_projection='3x3'``) into ``target`` (the same
    model with ``bank_projection='1x1'``) in place: every parameter copied, each bank
    projection's ``[C, n*C, 3, 3]`` kernel summed over its taps into ``[C, n*C, 1, 1]``."""
    src = source.state_dict()
    dst = target.state_dict()
    if set(src) != set(dst):
        missing = sorted(set(src) ^ set(dst))[:3]
        raise InputError(f"the 3x3 and 1x1 models differ in more than the bank projection (e.g. {missing})")
    converted = {}
    for name, value in dst.items():
        old = src[name]
        if old.shape == value.shape:
            converted[name] = old
        elif name.startswith("fusion.") and name.endswith("project.weight") and old.shape[2:] == (3, 3) \
                and value.shape[2:] == (1, 1) and old.shape[:2] == value.shape[:2]:
            converted[name] = old.sum(dim=(2, 3), keepdim=True)
        else:
            raise InputError(f"parameter {name!r}: {tuple(old.shape)} cannot become {tuple(value.shape)}")
    target.load_state_dict(converted)
