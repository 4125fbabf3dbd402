"""Data: sources (synth, folders, PetFace, tables), the verifying scan and its cache, decoding, splits,
transforms and pairs. One module per concern; this package re-exports what the rest of petlib uses."""
from .decode import (DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, DataError, ImageDecodeError, decode_verified,
                     load_image)
from .pairs import make_pairs
from .prepare import (PreparedData, list_source, load_protocol, load_split, load_splits, lookalike_families,
                      prepare_species, split_table)
from .scan import (IdentityIndex, dataset_stats, fingerprint, index_candidates, list_identity_folders,
                   scan_identities, skipped_summary)
from .splits import SPLITS, by_identity, read_manifest, sample_identities, split_identities, write_manifest
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, FaceDataset, eval_transforms, normalize_batch, reseed,
                         train_transforms)

__all__ = [
    "DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "DataError", "ImageDecodeError", "decode_verified", "load_image",
    "make_pairs", "PreparedData", "list_source", "load_protocol", "lookalike_families", "load_split", "load_splits",
    "prepare_species",
    "split_table", "IdentityIndex", "dataset_stats", "fingerprint", "index_candidates", "list_identity_folders",
    "scan_identities", "skipped_summary", "SPLITS", "by_identity", "read_manifest", "sample_identities", "split_identities",
    "write_manifest", "IMAGENET_MEAN", "IMAGENET_STD", "FaceDataset", "eval_transforms", "normalize_batch",
    "reseed", "train_transforms",
]
