"""crunet-gadgetron reconstruction library.

Physics, simulation, I/O and learning for accelerated cardiac cine MRI. Nothing here
does work at import time; import the submodules you need (``recon.fft``,
``recon.masks``, ``recon.io.ismrmrd_raw``, ...).
"""

__version__ = "0.1.0"
