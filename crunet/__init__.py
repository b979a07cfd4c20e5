"""The application layer: the ``crunet`` command and the studies built on the core.

Layers, top to bottom (each imports only those below it):

- :mod:`crunet` (this package): the command line (:mod:`crunet.cli`), the demo,
  evaluation and validation studies, weights cards, benchmarks.
- :mod:`gadgets`: everything that speaks Gadgetron / ISMRMRD messages (the external
  gadget, the server, the replay client, chains); it calls the core and nothing above it.
- :mod:`recon`: the physics and learning core (FFTs, operators, coil maps, methods,
  models, training, data I/O); it knows neither the protocol nor this package.
"""
