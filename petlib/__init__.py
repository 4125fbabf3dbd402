"""petface-study library: data, synthetic faces, models, ArcFace training, benchmarks, export, inference."""
import importlib.util
import sys
import warnings

from .constants import KERNEL_HINT

# A Python or Jupyter kernel that sees this folder but not the project's environment: one clear line.
_missing = [m for m in ("numpy", "yaml") if importlib.util.find_spec(m) is None]
if _missing:
    raise ModuleNotFoundError(f"{_missing[0]} is not importable in this kernel ({sys.executable}). {KERNEL_HINT}")

# tqdm.auto (imported by dependencies) warns in kernels without ipywidgets; our bars are plain tqdm.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
