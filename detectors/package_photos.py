"""Real photos that ship inside installed packages (scikit-image's and matplotlib's data), located on disk.

The int8 CenterFace is calibrated on them (``detectors.quantize``), and ``make demo`` copies them
(``pipeline.samples``): no evaluation photo is ever involved, and nothing is downloaded.
"""
from __future__ import annotations

import importlib.util
import os

PACKAGE_PHOTOS: dict[str, tuple[str, ...]] = {
    "astronaut.png": ("skimage", "data", "astronaut.png"),  # NASA, public domain: a face
    "grace_hopper.jpg": ("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"),  # US Navy: a face
    "coffee.png": ("skimage", "data", "coffee.png"),
    "chelsea.png": ("skimage", "data", "chelsea.png"),
    "rocket.jpg": ("skimage", "data", "rocket.jpg"),
    "motorcycle.png": ("skimage", "data", "motorcycle_left.png"),
}


def package_file(package: str, *parts: str) -> str:
    """The path of a data file inside an installed package; FileNotFoundError naming the package if absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install {package})")
    return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def photo_path(name: str) -> str:
    """The path of one of PACKAGE_PHOTOS by its file name."""
    return package_file(*PACKAGE_PHOTOS[name])
