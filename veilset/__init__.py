"""veilset: privacy-preserving image-dataset curation (build, take down, audit).

This folder is only the front door of the ``veilset`` import namespace. The rooms live in their own top-level
folders of the repository and are mapped into the namespace by setuptools' ``package_dir`` (``setup.py``):

    pipeline/      -> veilset.pipeline      (options, decode, anonymize, encode, shards, the Beam graph)
    detectors/     -> veilset.detectors     (face and plate detectors, registry, Beam ModelHandler, eval)
    segmentation/  -> veilset.segmentation  (mask generators: felzenszwalb, SAM)
    takedown/      -> veilset.takedown      (e-mailed removal requests, ledger, apply, receipts)
    audit/         -> veilset.audit         (release verification and the compliance report)
    release/       -> veilset.release       (the release format: image fingerprints, near-duplicate index)

Always import them through the namespace (``from veilset.pipeline import ids``), never as bare top-level
packages: the folders are not importable as ``pipeline`` etc. once installed, and a second copy of a module
under another name would mean a second registry. ``veilset.cli`` is the ``veilset`` console script.
"""
from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("veilset")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
