"""Linear layers off MKL in pinned CPU runs (petlib.kernels): the same function, through oneDNN."""
import pytest
import torch
import torch.nn.functional as F

from petlib import kernels, losses, models


@pytest.fixture
def routed():
    kernels.route(True)
    yield
    kernels.route(False)


@pytest.mark.parametrize("rows", [1, 2, 64])
def test_routed_linear_is_the_linear_function_and_its_gradients(routed, rows):
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=g, requires_grad=True) for s in ((rows, 96), (40, 96), (40,)))
    ref_x, ref_w, ref_b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y, ref = kernels.linear(x, w, b), F.linear(ref_x, ref_w, ref_b)
    assert y.shape == (rows, 40)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn(y.shape, generator=g)
    y.backward(grad)
    ref.backward(grad)
    for a, e in ((x, ref_x), (w, ref_w), (b, ref_b)):
        torch.testing.assert_close(a.grad, e.grad, rtol=1e-5, atol=1e-5)


def _ops(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def test_routing_changes_the_kernel_not_only_the_name(routed):
    """Routed, the product is oneDNN's convolution (no BLAS matrix product); not routed, BLAS's."""
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(64, 128, generator=g), torch.randn(560, 128, generator=g)
    on = _ops(lambda: kernels.linear(x, w))
    assert "aten::mkldnn_convolution" in on and not on & {"aten::mm", "aten::addmm", "aten::matmul"}, on
    kernels.route(False)
    off = _ops(lambda: kernels.linear(x, w))
    assert "aten::mkldnn_convolution" not in off and off & {"aten::mm", "aten::addmm", "aten::matmul"}, off


def test_traced_and_exported_graphs_see_a_plain_linear(routed):
    lin = kernels.Linear(8, 4)
    graph = str(torch.jit.trace(lin, torch.randn(3, 8)).graph)
    assert "aten::linear" in graph and "conv" not in graph
    assert set(lin.state_dict()) == set(torch.nn.Linear(8, 4).state_dict())


def test_one_image_batches_are_doubled_only_when_routed(routed):
    x = torch.randn(1, 3, 8, 8)
    batch, n = kernels.at_least_two(x)
    assert batch.shape[0] == 2 and n == 1 and torch.equal(batch[0], batch[1])
    assert kernels.at_least_two(torch.randn(3, 3, 8, 8))[0].shape[0] == 3
    kernels.route(False)
    assert kernels.at_least_two(x)[0].shape[0] == 1


def test_arcface_and_the_mlp_head_use_the_routed_product(routed, monkeypatch):
    calls = []
    real = kernels.linear
    monkeypatch.setattr(kernels, "linear", lambda *a: calls.append(a[0].shape) or real(*a))
    monkeypatch.setattr(losses, "linear", kernels.linear)
    head = losses.ArcFaceHead(16, 10)
    head(torch.randn(4, 16), torch.arange(4))
    models.MLPHead(24, embedding_dim=16).eval()(torch.randn(4, 24, 2, 2))
    assert calls[0] == (4, 16) and len(calls) == 3  # ArcFace, then the MLP head's two layers


# ATen ops whose CPU float kernels call MKL's vector math (vms*/vmd*), found with a gdb breakpoint on every
# vms/vmd entry point of libtorch_cpu (docs/reproducibility.md); its rounding follows the CPU vendor.
MKL_VECTOR_MATH = {"sqrt", "exp", "log", "tanh", "erf", "erfc", "erfinv", "sin", "cos", "tan", "asin", "acos",
                   "atan", "log2", "log10", "trunc"}


class _CPUFloatOps(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__.rstrip("_")
        tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        if any(t.device.type == "cpu" and t.is_floating_point() for t in tensors):
            self.seen.add("sqrt" if name == "pow" and args[1:2] == (0.5,) else name)
        return func(*args, **(kwargs or {}))


def test_a_training_step_and_validation_call_no_mkl_vector_math(make_params, tmp_path):
    """What made the per-tensor AdamW step differ between Intel and AMD: torch.sqrt on MKL. A pinned
    training step (forward, ArcFace, backward, clipping, the optimizer step) and validation avoid it."""
    from petlib import reproducible, runtime, train

    params = make_params(tmp_path)
    rt = runtime.setup("cpu", False)
    reproducible.apply(params.reproducible, rt.device)
    s = train.build(params, "mnv3", "cat", rt, progress=False)
    x, y = next(iter(s.loader))
    with _CPUFloatOps() as mode:
        train.train_step(s, x, y, params.train, 0, 0, tmp_path)
        train.validate(s)
    assert {"convolution", "_fused_adamw"} <= mode.seen, mode.seen  # the mode saw the step
    assert not mode.seen & MKL_VECTOR_MATH, mode.seen & MKL_VECTOR_MATH
    kernels.route(False)


def test_sqrt_off_mkl_is_the_square_root():
    x = torch.rand(1000, dtype=torch.float64) + 1e-3
    torch.testing.assert_close(kernels.sqrt(x.float()), x.sqrt().float(), rtol=2e-7, atol=0)
