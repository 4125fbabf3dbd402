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
    out = h(emb, torch.tensor([1]))[0][0]
    cos = [0.6, 0.8, (-0.6 + 0.8) / math.sqrt(2)]
    expect = [32 * cos[0], 32 * math.cos(math.acos(0.8) + 0.4), 32 * cos[2]]
    assert torch.allclose(out, torch.tensor(expect), atol=1e-4)
    h.m = 0.0
    assert torch.allclose(h(emb, torch.tensor([1]))[0][0], 32 * torch.tensor(cos), atol=1e-4)


def test_fallback_beyond_pi():
    h = _head(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    emb = torch.tensor([[-1.0, 0.01]])  # theta ~ pi for class 0: theta + m > pi
    out = h(emb, torch.tensor([0]))[0][0, 0].item()
    c = -1.0 / math.sqrt(1 + 1e-4)
    assert abs(out - 32 * (c - 0.4 * math.sin(0.4))) < 1e-3


def test_stable_at_cos_plus_minus_one():
    for sign in (1.0, -1.0):
        w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        emb = (sign * torch.tensor([[1.0, 0.0, 0.0]])).requires_grad_(True)
        h = _head(w)
        loss = arcface_loss(*h(emb, torch.tensor([0])))
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


def test_partial_fc_at_rate_one_is_the_full_head():
    """Rate 1.0 and a rate whose sample covers every class both give the full head's logits, labels,
    loss and gradients exactly."""
    torch.manual_seed(0)
    w, emb, y = torch.randn(10, 8), torch.randn(6, 8), torch.tensor([3, 3, 7, 0, 9, 1])
    results = []
    for rate in (None, 1.0, 0.95):  # 0.95 x 10 classes -> 10 sampled: the sampling path, all classes
        h = _head(w) if rate is None else ArcFaceHead(8, 10, sample_rate=rate)
        with torch.no_grad():
            h.weight.copy_(w)
        e = emb.clone().requires_grad_(True)
        logits, target = h(e, y)
        loss = arcface_loss(logits, target)
        loss.backward()
        results.append((logits.detach(), target, loss.detach(), e.grad, h.weight.grad))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_partial_fc_samples_the_batch_classes_and_trains():
    torch.manual_seed(0)
    n, d = 200, 16
    h = ArcFaceHead(d, n, m=0.2, sample_rate=0.1)
    y = torch.arange(32) % 20 * 10  # 20 distinct classes of 200
    index = h.sample(y)
    assert len(index) == 20 and set(y.tolist()) <= set(index.tolist()) and torch.equal(index, index.sort()[0])
    y = torch.randint(0, n, (48,))
    index = h.sample(y)
    assert len(index) == max(20, len(y.unique())) and set(y.tolist()) <= set(index.tolist())
    e = torch.randn(48, d)
    torch.manual_seed(1)
    index = h.sample(y)
    torch.manual_seed(1)
    logits, target = h(e, y)  # the same sample: logits over it, labels as positions in it
    assert logits.shape == (48, len(index)) and torch.equal(index[target], y)
    h.eval()
    assert h(e, y)[0].shape == (48, n)  # evaluation scores every class
    h.train()
    # a tiny set: 60 points of 200 classes around fixed centres, a learnable embedding layer; loss falls
    centres = torch.randn(n, d)
    labels = torch.randint(0, n, (60,))
    x = centres[labels] + 0.1 * torch.randn(60, d)
    layer = torch.nn.Linear(d, d)
    opt = torch.optim.SGD(list(layer.parameters()) + list(h.parameters()), lr=0.5)
    losses = []
    for _ in range(60):
        loss = arcface_loss(*h(layer(x), labels), label_smoothing=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
