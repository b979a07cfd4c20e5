"""Classical reconstructions. Each takes a :class:`recon.slicedata.SliceData` and
returns complex64 images ``[t, y, x]`` on the recon grid."""
