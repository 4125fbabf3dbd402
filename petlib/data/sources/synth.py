"""`synth`: the embedded procedural faces (petlib.synth), generated on first use into `data.synth_dir`;
identities i // synth.lookalike_family share fur colour and pattern (the look-alike families)."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from ... import synth
from ..scan import list_identity_folders
from .base import Source


def _tag(s) -> str:
    return f"synth-n{s.n_identities}-px{s.image_size}-s{s.seed}-f{s.lookalike_family}" + \
        (f"-t{s.n_test_identities}" if s.n_test_identities else "")


def _list(p, species: str, root: Path, progress: bool):
    """Identities 0..n-1 as before; the n_test_identities after them (each drawn from its own seed, so
    the first n are the same pixels either way) are held out for the test split."""
    s = p.data.synth
    synth.generate(root, species, n_identities=s.n_identities + s.n_test_identities, image_size=s.image_size,
                   seed=s.seed, family=s.lookalike_family, progress=progress)
    listing = list_identity_folders(root)
    held = {synth.identity_name(species, i) for i in range(s.n_identities, s.n_identities + s.n_test_identities)}
    return replace(listing, test_identities=frozenset(held))


def _families(p, species: str, identities: list[str]):
    return "look-alike family", np.array([int(re.sub(r"\D", "", n)) // max(p.data.synth.lookalike_family, 1)
                                          for n in identities])


SOURCE = Source("synth", "the embedded synthetic faces", listing=_list,
                root=lambda p, species, study: Path(p.data.synth_dir) / _tag(p.data.synth) / species,
                species=("cat", "dog"), families=_families)
