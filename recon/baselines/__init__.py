"""Classical reconstructions. Each takes a :class:`recon.problem.SliceProblem` and
returns complex64 images ``[t, y, x]`` on the recon grid (run by name through :mod:`recon.methods`)."""
