"""Learned reconstruction models (CRUNet-MR with its feature bank, CRNN-MRI, PromptMR).

Every model maps ``(k [b, t, c, y, x], mask [b, t, y], maps [b, c, y, x])`` to
complex images ``[b, t, y, x]`` and is built from a :class:`ModelConfig` with
:func:`recon.models.registry.build_model`.
"""
