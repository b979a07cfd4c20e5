"""Training of the learned reconstructions (CRUNet-MR and its feature-bank variants, CRNN-MRI).

Modules, one job each:

- :mod:`recon.train.config`: ``RunConfig {model, data, train}`` from YAML, validated;
- :mod:`recon.train.data`: on-the-fly simulated samples (real cine series or the
  phantom, simulated phase / coils / noise / masks, readout strips) and ISMRMRD files
  with ground truth; seeded per (epoch, index);
- :mod:`recon.train.loss`: k-space MSE + image MSE + L1 + (1 - SSIM);
- :mod:`recon.train.schedule`: linear warm-up + cosine annealing, a function of the step;
- :mod:`recon.train.ddp`: ``torch.distributed`` set-up from ``torchrun``'s environment;
- :mod:`recon.train.engine`: the loop, validation, checkpoints, exact resume, run folder.

Nothing is imported here, so ``import recon.train`` costs nothing.
"""
