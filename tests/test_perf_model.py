"""Speed-only code paths give the same numbers as the reference paths (fp32, CPU, tiny models)."""
import copy

import pytest
import torch
import torch.nn.functional as F

import uniformerv2 as u
from uniformerv2.model.layers import CHECKPOINT_POLICIES, DPE, DPE_IMPLS, LocalMHRA

from test_model import perturb_


def _explicit_dpe(m: DPE, grid):
    """27 shifted multiply-adds on the zero-padded grid, written out independently."""
    b, t, h, w, c = grid.shape
    weight, bias = m.conv.weight, m.conv.bias
    padded = F.pad(grid, (0, 0, 1, 1, 1, 1, 1, 1))
    out = torch.zeros_like(grid) + bias
    for dt in range(3):
        for dh in range(3):
            for dw in range(3):
                out = out + padded[:, dt:dt + t, dh:dh + h, dw:dw + w] * weight[:, 0, dt, dh, dw]
    return out


@pytest.mark.parametrize("t", [1, 2, 5])
def test_dpe_implementations_agree(t):
    m = perturb_(DPE(6), scale=0.3)
    frames = torch.randn(2, t, 17, 6)  # (B, T, 1+HW, C) with a 4x4 patch grid after the class token
    grid = frames[:, :, 1:].reshape(2, t, 4, 4, 6)  # the strided view the model passes in
    expected = _explicit_dpe(m, grid)
    for impl in DPE_IMPLS:
        m.impl = impl
        torch.testing.assert_close(m(grid), expected, rtol=1e-5, atol=1e-6, msg=impl)
    with pytest.raises(ValueError):
        m.impl = "fft"


def test_dpe_implementations_have_the_same_gradients():
    m = perturb_(DPE(4), scale=0.3)
    grid = torch.randn(1, 3, 3, 3, 4)
    grads = {}
    for impl in DPE_IMPLS:
        m.impl = impl
        g = grid.clone().requires_grad_()
        m.zero_grad()
        m(g).sin().sum().backward()
        grads[impl] = (g.grad, m.conv.weight.grad.clone(), m.conv.bias.grad.clone())
    for impl in DPE_IMPLS[1:]:
        for a, b in zip(grads["conv"], grads[impl]):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=impl)


def test_batchnorm_folding_is_exact_in_eval():
    m = perturb_(LocalMHRA(12, 1.5), scale=0.2).eval()
    x = torch.randn(2, 4, 9, 12)
    folded = m(x)
    m.fold_bn = False
    torch.testing.assert_close(folded, m(x), rtol=1e-5, atol=1e-6)
    # training mode uses batch statistics: no folding there
    m.fold_bn = True
    assert not m.train()._fold()


@pytest.mark.parametrize("preset", ["tiny_k400_8x64", "tiny_ssv2_8x64"])
def test_eager_inference_path_matches_autograd_path(preset):
    model = perturb_(u.create_model(preset, num_classes=9), scale=0.05).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    kept = video.clone()
    reference = model(video)  # grad enabled: the standard path
    with torch.inference_mode():
        fast = model(video)
        model.eager_fast_path = False
        try:
            plain = model(video)
        finally:
            model.eager_fast_path = True
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, reference, rtol=1e-5, atol=1e-6)
    assert torch.equal(video, kept)  # the input is never written to
    with torch.no_grad():
        features = model.forward_features(video)
    torch.testing.assert_close(model.head(features), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", CHECKPOINT_POLICIES)
def test_checkpoint_policies_give_the_same_gradients(policy):
    torch.manual_seed(1)
    opts = dict(num_classes=3, head_dropout=0.0, global_mlp_dropout=0.0)
    a = perturb_(u.create_model("tiny_ssv2_8x64", **opts))
    b = u.create_model("tiny_ssv2_8x64", **opts)
    b.load_state_dict(a.state_dict())
    b.set_grad_checkpointing(3, policy=policy)
    assert [blk.grad_checkpointing for blk in b.blocks] == [True, True, True, False]
    video = torch.randn(1, 3, 8, 64, 64)
    for m in (a, b):
        m.train()
        m(video).square().sum().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-6, msg=n)
    with pytest.raises(u.UserError):
        b.set_grad_checkpointing(True, policy="everything")


def test_bf16_autocast_logits_within_two_percent():
    model = perturb_(u.create_model("tiny_ssv2_8x64", num_classes=50), scale=0.1).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    with torch.inference_mode():
        ref = model(video)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(video)
    assert low.dtype == torch.bfloat16
    assert ref.std() > 0.1  # non-trivial logits
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.02, rel


def test_bf16_weights_logits_within_two_percent():
    """Inference with the weights cast to bf16 and no autocast (what VideoClassifier runs on a GPU)."""
    model = perturb_(u.create_model("tiny_ssv2_8x64", num_classes=50), scale=0.1).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    with torch.inference_mode():
        ref = model(video)
        low = copy.deepcopy(model).to(torch.bfloat16)(video.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16 and ref.std() > 0.1
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.02, rel


def test_no_graph_breaks_with_each_dpe_and_checkpoint_policy():
    cases = [("shift", None, False), ("conv2d", "save_attention", True), ("conv", "block", True)]
    for impl, policy, train in cases:
        model = u.create_model("uniformerv2_nano", local_mhra="double", num_frames=4).train(train)
        model.set_dpe_impl(impl)
        if policy:
            model.set_grad_checkpointing(True, policy=policy)
        explained = torch._dynamo.explain(model)(torch.randn(1, 3, 4, 32, 32))
        assert explained.graph_count == 1 and explained.graph_break_count == 0, (impl, explained.break_reasons)


def test_forward_never_syncs_with_the_host():
    """CUDA-graph friendly: no op in inference or training that reads a value back to the host
    (``.item()``, ``nonzero``, data-dependent shapes), recorded at the dispatcher."""
    from torch.utils._python_dispatch import TorchDispatchMode

    syncing = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "equal", "is_nonzero"}

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    model = u.create_model("tiny_ssv2_8x64", drop_path_rate=0.1)
    video = torch.randn(2, 3, 8, 64, 64)
    for train in (False, True):
        model.train(train)
        with Record() as rec, torch.set_grad_enabled(train):
            out = model(video)
            if train:
                out.sum().backward()
        assert "addmm" in rec.ops or "mm" in rec.ops  # the recorder saw the model's ops
        assert not rec.ops & syncing, (train, rec.ops & syncing)
