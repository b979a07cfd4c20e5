"""Everything that speaks Gadgetron: the external Python gadget, bucket assembly,
image emission, protocol framing, the standalone server and the replay client.

The physics lives in :mod:`recon`; modules here only translate between Gadgetron /
ISMRMRD messages and :class:`recon.slicedata.SliceData`.
"""
