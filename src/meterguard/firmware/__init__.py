"""Firmware: the image format, the head-end's TUF repository, reference measurements.

:mod:`.image` builds and parses a firmware image (a manifest and a payload); :mod:`.repository`
keeps the signed update repository (python-tuf's Metadata API) in a directory; the meter's side
(its updater, A/B slots and measured boot) is in :mod:`meterguard.meter.firmware`. No network.
"""
