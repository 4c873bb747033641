"""The memory-lean training MLP (``accel.mlp.LeanMlp``): same numbers, fewer saved tensors."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import uniformerv2 as u
from uniformerv2.accel import mlp as lean_module
from uniformerv2.accel import optimize, swap
from uniformerv2.accel.mlp import LeanMlp, _QuickGELULinear
from uniformerv2.model.layers import Mlp

from test_model import perturb_


def _plain(fc1: nn.Linear, fc2: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """fc2(QuickGELU(fc1(x))) written out with the formula, independent of layers.Mlp/QuickGELU."""
    h = fc1(x)
    return fc2(h * torch.sigmoid(1.702 * h))


def _twin(m: Mlp) -> tuple[nn.Linear, nn.Linear]:
    fc1, fc2 = nn.Linear(m.fc1.in_features, m.fc1.out_features), nn.Linear(m.fc2.in_features, m.fc2.out_features)
    fc1.load_state_dict(m.fc1.state_dict())
    fc2.load_state_dict(m.fc2.state_dict())
    return fc1.to(m.fc1.weight.dtype), fc2.to(m.fc2.weight.dtype)


class _Counting(_QuickGELULinear):
    calls = 0

    @classmethod
    def apply(cls, *args):
        _Counting.calls += 1
        return super().apply(*args)


@pytest.fixture
def counting(monkeypatch):
    _Counting.calls = 0
    monkeypatch.setattr(lean_module, "_QuickGELULinear", _Counting)
    return _Counting


def test_gradients_equal_plain_composition_float64(counting):
    torch.manual_seed(0)
    m = swap(Mlp(6, 24).double().train(), LeanMlp)
    fc1, fc2 = _twin(m)
    x = torch.randn(3, 5, 6, dtype=torch.float64)  # (B, L, C)
    g = torch.randn(3, 5, 6, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = m(xa)
    assert counting.calls == 1  # the lean path ran
    ref = _plain(fc1, fc2, xb)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    out.backward(g)
    ref.backward(g)
    pairs = [(xa.grad, xb.grad), (m.fc1.weight.grad, fc1.weight.grad), (m.fc1.bias.grad, fc1.bias.grad),
             (m.fc2.weight.grad, fc2.weight.grad), (m.fc2.bias.grad, fc2.bias.grad)]
    for got, want in pairs:
        assert want.abs().max() > 1e-3  # non-trivial
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_function_gradcheck_and_needs_input_grad():
    h = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_QuickGELULinear.apply, (h, w, b))
    # only the weight needs a gradient: the others are not computed (None) and the weight's is right
    w2 = w.detach().clone().requires_grad_()
    _QuickGELULinear.apply(h.detach(), w2, b.detach()).sum().backward()
    a = h.detach() * torch.sigmoid(1.702 * h.detach())
    torch.testing.assert_close(w2.grad, torch.ones(2, 3, 4, dtype=torch.float64).flatten(0, 1).t() @ a.flatten(0, 1))


def _saved_bytes(fn) -> tuple[int, torch.Tensor]:
    """Bytes of the distinct tensors autograd saves while ``fn`` runs (a tensor saved twice counts once)."""
    seen = {}

    def pack(t):
        seen[(t.data_ptr(), t.numel(), t.dtype)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def test_saved_tensor_bytes(counting):
    torch.manual_seed(0)
    b, l, c, hidden = 2, 50, 64, 256
    m = swap(Mlp(c, hidden).train(), LeanMlp)
    fc1, fc2 = _twin(m)
    x = torch.randn(b, l, c, requires_grad=True)
    lean, out = _saved_bytes(lambda: m(x))
    assert counting.calls == 1
    plain, ref = _saved_bytes(lambda: _plain(fc1, fc2, x))
    torch.testing.assert_close(out, ref)
    f, tokens = 4, b * l
    weights = f * (c * hidden + hidden * c)  # fc1's and fc2's weights (biases are not needed in backward)
    # plain: fc1 input, h, sigmoid output, activation output (fc2 input) + weights
    assert plain == f * (tokens * c + 3 * tokens * hidden) + weights
    # lean: fc1 input and h + weights
    assert lean == f * (tokens * c + tokens * hidden) + weights
    assert plain - lean == 2 * f * tokens * hidden == 204800


def test_applied_to_mlps_without_dropout_only(counting):
    model = optimize(u.create_model("uniformerv2_nano", global_mlp_dropout=0.5), for_inference=False)
    lean = [type(m) is LeanMlp for m in model.modules() if isinstance(m, Mlp)]
    assert lean == [True] * len(model.blocks) + [False] * len(model.global_blocks)
    optimize(model, for_inference=True, inplace=False)  # inference: the reference MLP
    assert not any(type(m) is LeanMlp for m in model.modules())


def test_bf16_autocast_matches_plain_composition(counting):
    torch.manual_seed(0)
    m = swap(Mlp(32, 128).train(), LeanMlp)
    with torch.no_grad():
        m.fc2.weight.mul_(4)  # gradients of a healthy size
    fc1, fc2 = _twin(m)
    x = torch.randn(4, 20, 32)
    target = torch.randn(4, 20, 32)
    results = []
    for fn in (m, lambda y: _plain(fc1, fc2, y)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(x)
            loss = F.mse_loss(out.float(), target)
        loss.backward()
        results.append((out, loss))
    assert counting.calls == 1
    (out, loss), (ref_out, ref_loss) = results
    assert out.dtype == ref_out.dtype == torch.bfloat16
    assert m.fc2.weight.grad.dtype == m.fc2.bias.grad.dtype == m.fc1.weight.grad.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=2e-2, atol=0)
    for got, want in [(m.fc2.weight.grad, fc2.weight.grad), (m.fc2.bias.grad, fc2.bias.grad),
                      (m.fc1.weight.grad, fc1.weight.grad)]:
        assert want.abs().max() > 1e-3
        rel = (got - want).norm() / want.norm()
        assert rel < 2e-2, rel


def test_whole_model_training_step_same_gradients(counting):
    torch.manual_seed(0)
    a = perturb_(u.create_model("tiny_k400_8x64", drop_path_rate=0.1))
    b = u.create_model("tiny_k400_8x64", drop_path_rate=0.1)
    b.load_state_dict(a.state_dict())
    optimize(a, for_inference=False)
    video = torch.randn(2, 3, 8, 64, 64)
    labels = torch.tensor([3, 250])
    for model in (a, b):
        torch.manual_seed(1)  # same dropout / drop-path draws
        F.cross_entropy(model.train()(video), labels).backward()
    assert counting.calls == len(a.blocks)  # every backbone MLP, not the global blocks' (dropout 0.5)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert pb.grad is not None, name
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-7, msg=name)
    assert a.blocks[0].mlp.fc1.weight.grad.abs().max() > 1e-5
