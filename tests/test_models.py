from pathlib import Path

import pytest
import torch

from petlib import models
from petlib.models import PretrainedWeightsError, count_parameters, create_embedder, embedder_from_config

REPO = Path(__file__).resolve().parent.parent


def test_mnv3_gdconv_has_the_seeds_parameter_count():
    e = create_embedder("mobilenetv3_small_100", 224)
    assert count_parameters(e) == 1_701_408
    assert e.config["feature_channels"] == 1024 and e.config["feature_size"] == 7


def test_mobilefacenet_count_next_to_seed():
    e = create_embedder("mobilefacenet", 224)
    n = count_parameters(e)
    print(f"MobileFaceNet + GDConv at 224 px: {n:,} parameters (design: 1,082,624)")
    assert n == 1_082_624
    assert e.config["feature_channels"] == 512 and e.config["feature_size"] == 14


@pytest.mark.parametrize("backbone,head", [("mobilenetv3_small_100", "gdconv"), ("mobilefacenet", "mlp"),
                                           ("resnet18", "gdconv")])
def test_embeddings_are_unit_vectors(backbone, head):
    torch.manual_seed(0)
    e = create_embedder(backbone, 64, embedding_dim=32, head=head).eval()
    with torch.no_grad():
        z = e(torch.randn(3, 3, 64, 64))
    assert z.shape == (3, 32)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)


def test_unknown_backbone_and_head():
    with pytest.raises(ValueError, match="unknown backbone"):
        create_embedder("no_such_net_v9", 64)
    with pytest.raises(ValueError, match="unknown head"):
        create_embedder("mobilefacenet", 64, head="transformer")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_local_file_is_loaded(tmp_path, suffix):
    torch.manual_seed(1)
    src = models.create_backbone("mobilenetv3_small_100")
    state = {k: v.clone() for k, v in src.state_dict().items()}
    state["classifier.weight"] = torch.zeros(10, 1024)  # a timm checkpoint carries its classifier: ignored
    f = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(state, str(f))
    else:
        torch.save(state, f)
    torch.manual_seed(2)
    e = create_embedder("mobilenetv3_small_100", 64, pretrained=str(f))
    for k, v in src.state_dict().items():
        assert torch.equal(e.backbone.state_dict()[k], v), k


def test_pretrained_problems_are_clear_errors(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="not found.*refusing"):
        create_embedder("mobilenetv3_small_100", 64, pretrained=str(tmp_path / "missing.safetensors"))
    other = tmp_path / "mfn.pt"
    torch.save(models.MobileFaceNet().state_dict(), other)
    with pytest.raises(PretrainedWeightsError, match="does not fit"):
        create_embedder("mobilenetv3_small_100", 64, pretrained=str(other))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="cannot read"):
        create_embedder("mobilefacenet", 64, pretrained=str(junk))
    with pytest.raises(PretrainedWeightsError, match="no hub weights"):
        create_embedder("mobilefacenet", 64, pretrained="hub")


def test_rebuild_from_config():
    e = create_embedder("mobilefacenet", 64).eval()
    r = embedder_from_config(e.config, e.state_dict()).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(e(x), r(x))


def test_the_reference_study_shows_each_backbone_a_map_of_at_least_3x3_but_the_48px_control():
    """Issue 34: at 48 px MobileNetV3-Small (stride 32) ends on 2x2, so params/synthetic-full.yaml trains
    it at 96 px beside MobileFaceNet at 48 px, and keeps a 48 px MobileNetV3 to measure what that did."""
    from petlib.config import load_params

    p = load_params(REPO / "params" / "synthetic-full.yaml")
    maps = {m.name: create_embedder(m.backbone, p.image_size(m.name), head=m.head).config["feature_size"] for m in p.models}
    assert maps == {"mnv3": 3, "mfn": 3, "mnv3_48": 2}, maps
    assert {p.image_size(m.name) for m in p.models} == {96, 48}
