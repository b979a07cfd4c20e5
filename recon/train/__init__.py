"""Training of the learned reconstructions (CRUNet-MR and its feature-bank variants, CRNN-MRI).

Modules, one job each:

- :mod:`recon.train.config`: ``RunConfig {model, data, train}`` from YAML, validated;
- :mod:`recon.train.samples`: how one sample is made (simulated phase / coils / noise /
  masks through the raw-data path, readout strips, augmentation, scenes);
- :mod:`recon.train.series`: the real cine series: the patient split and the pool of slices;
- :mod:`recon.train.data`: the sample sources (on-the-fly simulated samples from real
  series or the phantom; ISMRMRD files with ground truth), seeded per (epoch, index),
  and the loader (epochs sharded over ranks, batches, the validation sets);
- :mod:`recon.train.loss`: k-space MSE + image MSE + L1 + (1 - SSIM);
- :mod:`recon.train.schedule`: linear warm-up + cosine annealing, a function of the step;
- :mod:`recon.train.ddp`: ``torch.distributed`` set-up from ``torchrun``'s environment;
- :mod:`recon.train.engine`: the loop, validation, checkpoints, exact resume, run folder;
- :mod:`recon.train.init`: a run started from installed weights (as they are, widened, re-projected);
- :mod:`recon.train.outputs`: the run's metric tables, curves and validation figure, the epoch line.

Nothing is imported here, so ``import recon.train`` costs nothing.
"""
