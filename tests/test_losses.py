import math

import torch

from petlib.losses import ArcFaceHead, arcface_loss


def _head(weight, s=32.0, m=0.4):
    h = ArcFaceHead(weight.shape[1], weight.shape[0], s=s, m=m)
    with torch.no_grad():
        h.weight.copy_(weight)
    return h


def test_logits_match_hand_computation():
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]])  # normalised inside the head
    emb = torch.tensor([[3.0, 4.0]])  # -> (0.6, 0.8)
    h = _head(w)
    out = h(emb, torch.tensor([1]))[0]
    cos = [0.6, 0.8, (-0.6 + 0.8) / math.sqrt(2)]
    expect = [32 * cos[0], 32 * math.cos(math.acos(0.8) + 0.4), 32 * cos[2]]
    assert torch.allclose(out, torch.tensor(expect), atol=1e-4)
    h.m = 0.0
    assert torch.allclose(h(emb, torch.tensor([1]))[0], 32 * torch.tensor(cos), atol=1e-4)


def test_fallback_beyond_pi():
    h = _head(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    emb = torch.tensor([[-1.0, 0.01]])  # theta ~ pi for class 0: theta + m > pi
    out = h(emb, torch.tensor([0]))[0, 0].item()
    c = -1.0 / math.sqrt(1 + 1e-4)
    assert abs(out - 32 * (c - 0.4 * math.sin(0.4))) < 1e-3


def test_stable_at_cos_plus_minus_one():
    for sign in (1.0, -1.0):
        w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        emb = (sign * torch.tensor([[1.0, 0.0, 0.0]])).requires_grad_(True)
        h = _head(w)
        loss = arcface_loss(h(emb, torch.tensor([0])), torch.tensor([0]))
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(emb.grad).all() and torch.isfinite(h.weight.grad).all()


def test_label_smoothing_is_applied():
    logits = torch.tensor([[10.0, 0.0, 0.0]])
    y = torch.tensor([0])
    plain = arcface_loss(logits, y, 0.0).item()
    smooth = arcface_loss(logits, y, 0.1).item()
    logp = torch.log_softmax(logits, 1)[0]
    hand = -(0.9 + 0.1 / 3) * logp[0].item() - (0.1 / 3) * (logp[1] + logp[2]).item()
    assert abs(smooth - hand) < 1e-5 and smooth > plain
