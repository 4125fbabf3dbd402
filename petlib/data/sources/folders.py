"""`folders`: one folder per identity (design §3.1; also DogFaceNet's `after_4_bis/<dog_id>/`)."""
from __future__ import annotations

from pathlib import Path

from ..scan import list_identity_folders
from .base import Source

SOURCE = Source("folders", "folders per identity",
                listing=lambda p, species, root, progress: list_identity_folders(root),
                root=lambda p, species, study: Path(p.data.roots[species]), needs="roots")
