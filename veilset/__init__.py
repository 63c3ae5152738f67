"""veilset: privacy-preserving image-dataset curation (build, take down, audit).

This folder holds the front door of the ``veilset`` import namespace (``cli``, ``api``, ``catalog``) and the
leaf ``veilset.plugins`` (the one plugin registry every room uses). It stays import-light: importing
``veilset.detectors`` must not load the stages. The rooms live in their own top-level folders of the repository
and are mapped into the namespace by setuptools' ``package_dir`` (``setup.py``); docs/ARCHITECTURE.md draws the
layers they form:

    pipeline/      -> veilset.pipeline      (options, decode, anonymize, encode, the Beam graph)
    detectors/     -> veilset.detectors     (face and plate detectors, registry, Beam ModelHandler, eval)
    segmentation/  -> veilset.segmentation  (mask generators: felzenszwalb, SAM)
    release/       -> veilset.release       (the release format: ids, layout, manifest, index, formats, storage)
    takedown/      -> veilset.takedown      (e-mailed removal requests, ledger, apply, receipts)
    audit/         -> veilset.audit         (release verification and the compliance report)

Always import them through the namespace (``from veilset.release import ids``), never as bare top-level
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
