"""Names shared across petlib, in one leaf module (it imports nothing of petlib): the export format
ids, the false-accept rates and their keys, the split names, the degradations of design §6.2 F."""
from __future__ import annotations

# Export format ids, in the order 05_export shows them; petlib.export.registry holds one entry per id.
FORMAT_IDS = ("onnx", "onnx_int8", "torchscript", "executorch", "coreml", "tflite")

# The false-accept rates thresholds and TAR/DIR figures are reported at (design §6.2 C, §6.3).
FARS = (1e-2, 1e-3, 1e-4)

SPLITS = ("train", "val", "test")

# PetFace's animal families (its split/<family>/ folders).
PETFACE_FAMILIES = ("cat", "chimp", "chinchilla", "degus", "dog", "ferret", "guineapig", "hamster", "hedgehog",
                    "parakeet", "javasparrow", "pig", "rabbit")

# The five degradations of design §6.2 F: id -> label (petlib.embed holds the image functions).
DEGRADATIONS = {"gaussian_blur": "Gaussian blur", "gaussian_noise": "Gaussian noise",
                "jpeg_compression": "JPEG compression", "brightness": "Brightness",
                "partial_occlusion": "Partial occlusion"}


def far_key(far: float) -> str:
    """The one spelling of a false-accept rate in keys and file names: 1e-3 -> '1e-3'."""
    return f"{far:.0e}".replace("e-0", "e-").replace("e+0", "e")


# What a kernel without the project's environment is told (petlib/__init__.py, petlib.notebook).
KERNEL_HINT = ("Choose the kernel 'petface-study (.venv)' (Kernel > Change Kernel...), which `make lab` installs "
               "from the repository; or run `make lab` there.")
