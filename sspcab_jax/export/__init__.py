"""Deployable detectors: one ``.jaxexport`` file, run with JAX and NumPy (no Flax, no Pillow).

``export_detector(detector, path)`` lowers a :class:`~sspcab_jax.detector.Detector`
(preprocessing, network, scoring, normalisation, thresholds) with :mod:`jax.export`;
``load(path)`` runs it. See ``docs/export.md``.
"""

from sspcab_jax.export.artifact import FORMAT_VERSION
from sspcab_jax.export.loader import ExportedDetector, ExportedNetwork, load
from sspcab_jax.export.lower import export_detector, export_network

__all__ = [
    "FORMAT_VERSION",
    "ExportedDetector",
    "ExportedNetwork",
    "export_detector",
    "export_network",
    "load",
]
