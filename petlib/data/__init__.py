"""Data: sources (one module each behind `sources.SOURCES`), the verifying scan and its cache, decoding,
splits, transforms and pairs. One module per concern; this package re-exports what the rest of petlib uses."""
from ..constants import SPLITS
from .decode import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, DataError, ImageDecodeError, decode_verified, load_image
from . import audit
from .prepare import PreparedData, list_source, prepare_species, split_table
from .read import (data_root, load_audit, load_protocol, load_split, load_splits, lookalike_families,
                   splits_fingerprint)
from .scan import dataset_stats, index_candidates, list_identity_folders, scan_identities, skipped_summary
from .sources import SOURCES, Source
from .splits import by_identity, identity_splits, read_manifest, sample_identities, split_identities, write_manifest
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, FaceDataset, eval_transforms, normalize_batch, preload, reseed,
                         train_transforms)
from .types import IdentityIndex, Listing

__all__ = [
    "SPLITS", "DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "DataError", "ImageDecodeError", "decode_verified",
    "load_image", "PreparedData", "data_root", "list_source", "load_audit", "load_protocol", "audit",
    "load_split", "load_splits", "lookalike_families", "prepare_species", "split_table", "dataset_stats",
    "index_candidates", "list_identity_folders", "scan_identities", "skipped_summary", "SOURCES", "Source",
    "by_identity", "identity_splits", "read_manifest", "sample_identities", "split_identities", "write_manifest",
    "IMAGENET_MEAN", "IMAGENET_STD", "FaceDataset", "eval_transforms", "normalize_batch", "preload", "reseed",
    "train_transforms", "IdentityIndex", "Listing", "splits_fingerprint",
]
