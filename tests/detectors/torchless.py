"""Run a snippet in a fresh interpreter where ``import torch`` / ``import torchvision`` fail."""
from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def import_and_build_without_torch(module: str, build_call: str) -> str:
    """Import ``module`` as ``m`` (asserting it does not import torch), run ``build_call`` and return what the
    ImportError it raises says (empty when it raises none)."""
    code = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
            f"import {module} as m\n"
            "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\n"
            "try:\n"
            f"    {build_call}\n"
            "except ImportError as err:\n"
            "    print(err)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
