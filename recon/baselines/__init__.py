"""Classical reconstructions. Each takes a :class:`recon.problem.SliceProblem` and
returns complex64 images ``[t, y, x]`` on the recon grid (see :mod:`.registry`)."""
