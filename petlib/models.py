"""Backbones (one registry), embedding heads and the embedder. No file trees here: weights come in as
a path or a state dict, data never.

`create_embedder("mobilenetv3_small_100")` -> timm MobileNetV3-Small (global_pool="", drop_rate=0.2,
timm's 1x1 conv_head 576->1024 kept) + GDConv head. At 224 px it has exactly 1,701,408 parameters,
the design's count (the design's text says 576 channels; its count implies the 1024-channel map).
`create_embedder("mobilefacenet")` -> MobileFaceNet (design §4.2) + the same GDConv head.
Any other timm model name works unchanged: its unpooled feature map feeds the head.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .io import load_torch
from .kernels import Linear
from .losses import ArcFaceHead

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


class PretrainedWeightsError(RuntimeError):
    """Weights were asked for and cannot be loaded. Never fall back to training from scratch."""


def register_backbone(name: str):
    def deco(fn):
        _BACKBONES[name] = fn
        return fn
    return deco


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)


# --------------------------------------------------------------------------- MobileFaceNet
class ConvBN(nn.Sequential):
    def __init__(self, cin, cout, k=1, s=1, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.PReLU(cout))
        super().__init__(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection; residual when shapes match."""

    def __init__(self, cin, cout, stride, expansion):
        super().__init__()
        mid = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.block = nn.Sequential(ConvBN(cin, mid), ConvBN(mid, mid, 3, stride, groups=mid),
                                   ConvBN(mid, cout, act=False))

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileFaceNet(nn.Module):
    """MobileFaceNet trunk as in design §4.2, up to the 1x1 conv to 512 channels (stride 16: 14x14 at 224 px).

    With the GDConv head the embedder has 1,082,624 parameters at 224 px, exactly the design's count. That
    count pins one detail the design's diagram leaves open: the depthwise-separable block's pointwise
    1x1 conv is linear (BN, no PReLU); with a PReLU there the count would be 64 higher. The GDConv
    kernel follows the map (7x7 at 112 px), so at 112 px the embedder has 1,007,360 parameters.
    """

    stages = [(5, 2, 64, 2), (1, 4, 128, 2), (6, 2, 128, 1), (1, 4, 128, 2), (2, 2, 128, 1)]

    def __init__(self, in_chans=3):
        super().__init__()
        layers = [ConvBN(in_chans, 64, 3, 2), ConvBN(64, 64, 3, 1, groups=64), ConvBN(64, 64, act=False)]
        cin = 64
        for n, t, c, s in self.stages:
            for i in range(n):
                layers.append(Bottleneck(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(ConvBN(cin, 512))
        self.features = nn.Sequential(*layers)
        self.num_features = 512
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x):
        return self.features(x)


@register_backbone("mobilefacenet")
def _mobilefacenet(pretrained=None, **_):
    return MobileFaceNet()


def _timm_backbone(name: str, pretrained=None):
    import timm

    kwargs = {"num_classes": 0, "global_pool": ""}
    if name.startswith("mobilenetv3"):
        kwargs["drop_rate"] = 0.2
    try:
        return timm.create_model(name, pretrained=pretrained == "hub", **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ValueError(f"unknown backbone {name!r}: not in petlib's registry {list_backbones()} "
                             f"and not a timm model name") from None
        raise


def hub_weights_file(name: str) -> Path | None:
    """The file timm's `pretrained=True` loads for a timm backbone, when it is in the local hub cache."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    try:
        hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id
    except (RuntimeError, AttributeError):
        return None
    for file in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, file) if hub_id else None
        if isinstance(found, str):
            return Path(found)
    return None


def create_backbone(name: str, pretrained: str | None = None) -> nn.Module:
    """A feature-map backbone by name; `pretrained` is None, a local weights file, or 'hub'."""
    if name in _BACKBONES:
        if pretrained == "hub":
            raise PretrainedWeightsError(f"{name}: no hub weights exist; give a local weights file or null")
        net = _BACKBONES[name]()
    else:
        try:
            net = _timm_backbone(name, pretrained)
        except (OSError, RuntimeError) as e:
            if pretrained == "hub":
                raise PretrainedWeightsError(f"{name}: hub weights could not be loaded ({e}); this study runs "
                                             f"offline, so give a local weights file instead") from None
            raise
    if pretrained and pretrained != "hub":
        load_backbone_weights(net, pretrained)
    return net


def load_backbone_weights(net: nn.Module, path: str | Path) -> None:
    """Load a timm/safetensors/torch state dict into `net`. Classifier keys in the file are ignored;
    any backbone key missing from the file, or a shape mismatch, is an error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(f"{path}: pretrained weights file not found (models[].pretrained); "
                                     f"refusing to train from scratch silently - set pretrained: null to do so")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = load_torch(path)
            for key in ("state_dict", "model", "model_state"):
                if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                    state = state[key]
    except Exception as e:
        raise PretrainedWeightsError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from None
    own = net.state_dict()
    mismatched = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    missing = [k for k in own if k not in state]
    if mismatched or missing:
        detail = f"shape mismatch for {mismatched[:3]}" if mismatched else f"missing keys {missing[:3]}"
        raise PretrainedWeightsError(f"{path}: does not fit this backbone ({detail}, "
                                     f"{len(missing) + len(mismatched)} problems in all)")
    net.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)


# --------------------------------------------------------------------------- heads
class GDConvHead(nn.Module):
    """GDConv (depthwise conv as large as the map) + BN, dropout, 1x1 conv to the embedding (no bias), BN."""

    def __init__(self, channels: int, spatial: int, embedding_dim: int = 128, dropout: float = 0.4):
        super().__init__()
        self.gdconv = nn.Conv2d(channels, channels, spatial, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Conv2d(channels, embedding_dim, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(embedding_dim)

    def forward(self, x):
        x = self.bn2(self.proj(self.dropout(self.bn1(self.gdconv(x)))))
        return torch.flatten(x, 1)


class MLPHead(nn.Module):
    """Design §4.3 alternative: pooled features -> Dropout -> 512 -> BN -> PReLU -> Dropout -> embedding -> BN."""

    def __init__(self, channels: int, spatial: int = 0, embedding_dim: int = 128, dropout: float = 0.4):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), Linear(channels, 512), nn.BatchNorm1d(512), nn.PReLU(512),
                                 nn.Dropout(0.2), Linear(512, embedding_dim), nn.BatchNorm1d(embedding_dim))

    def forward(self, x):
        return self.net(x.mean((2, 3)) if x.ndim == 4 else x)


HEADS = {"gdconv": GDConvHead, "mlp": MLPHead}


class PetFaceEmbedder(nn.Module):
    """backbone -> head -> L2-normalised embedding. The only part that ships to a phone."""

    def __init__(self, backbone: nn.Module, head: nn.Module, config: dict):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.config = dict(config)

    def forward(self, x):
        return F.normalize(self.head(self.backbone(x)).float(), dim=1)


class PetFaceModel(nn.Module):
    """Embedder + ArcFace classifier, for training only; the ArcFace weight is discarded afterwards."""

    def __init__(self, embedder: PetFaceEmbedder, num_classes: int, s: float = 32.0, m: float = 0.4,
                 partial_fc: float = 1.0):
        super().__init__()
        self.embedder = embedder
        self.arcface = ArcFaceHead(embedder.config["embedding_dim"], num_classes, s=s, m=m, sample_rate=partial_fc)

    def forward(self, x, labels=None):
        """The embedding; with labels, (ArcFace logits, labels as indices into those logits' classes)."""
        emb = self.embedder(x)
        return emb if labels is None else self.arcface(emb, labels)


def _feature_shape(backbone: nn.Module, image_size: int) -> tuple[int, int]:
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        c, h, w = backbone(torch.zeros(2, 3, image_size, image_size)).shape[1:]  # 2: oneDNN, as in training
    backbone.train(was_training)
    if h != w:
        raise ValueError(f"backbone gives a non-square {h}x{w} map at {image_size} px")
    return int(c), int(h)


def create_embedder(backbone: str, image_size: int = 224, embedding_dim: int = 128, head: str = "gdconv",
                    pretrained: str | None = None, dropout: float = 0.4) -> PetFaceEmbedder:
    """Build a `PetFaceEmbedder`; its `.config` is everything needed to rebuild it (see `embedder_from_config`)."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose from {sorted(HEADS)}")
    net = create_backbone(backbone, pretrained)
    channels, spatial = _feature_shape(net, image_size)
    config = {"backbone": backbone, "image_size": image_size, "embedding_dim": embedding_dim, "head": head,
              "dropout": dropout, "feature_channels": channels, "feature_size": spatial}
    return PetFaceEmbedder(net, HEADS[head](channels, spatial, embedding_dim, dropout), config)


def embedder_from_config(config: dict, state_dict: dict | None = None) -> PetFaceEmbedder:
    """Rebuild an embedder from a run's config (no pretrained download: the weights come from the run)."""
    emb = create_embedder(config["backbone"], config["image_size"], config["embedding_dim"], config["head"],
                          None, config.get("dropout", 0.4))
    if state_dict is not None:
        emb.load_state_dict(state_dict)
    return emb


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
