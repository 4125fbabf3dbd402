"""petface-study library: data, synthetic faces, models, ArcFace training, benchmarks, export, inference."""
import warnings

# tqdm.auto (imported by dependencies) warns in kernels without ipywidgets; our bars are plain tqdm.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
