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
    release/       -> veilset.release       (the release format: image fingerprints, near-duplicate index)

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

# The Python API (``veilset.api``), resolved on first use (PEP 562) so that ``import veilset`` and importing a room
# stay light: ``veilset.build(inputs, output, **options)``, ``veilset.Release(path)``,
# ``veilset.audit_release(release)``, ``veilset.takedown_ingest/takedown_apply/takedown_status``. (``veilset.audit``
# and ``veilset.takedown`` are the rooms: a submodule import sets those names, so functions could not keep them.)
_API = {"build": "build_release", "Release": "Release", "audit_release": "audit",
        "takedown_ingest": "takedown_ingest",
        "takedown_apply": "takedown_apply", "takedown_status": "takedown_status"}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from veilset import api

        return getattr(api, _API[name])
    raise AttributeError(f"module 'veilset' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
