"""Speed and memory variants (``uniformerv2.accel``) against the reference model: same numbers (fp32, CPU,
tiny models), same parameters and names, swapped in and out explicitly."""
import copy

import pytest
import torch

import uniformerv2 as u
from uniformerv2.accel import CHECKPOINT_POLICIES, optimize, revert, swap, variants_in
from uniformerv2.accel.checkpoint import CheckpointBlock
from uniformerv2.accel.inplace import InplaceLocalUniBlock
from uniformerv2.accel.local import FoldedLocalMHRA, fold_batchnorm
from uniformerv2.accel.mlp import LeanMlp
from uniformerv2.model.layers import LocalMHRA, LocalUniBlock, Mlp

from test_model import perturb_


def test_batchnorm_folding_is_exact_in_eval():
    m = perturb_(LocalMHRA(12, 1.5), scale=0.2).eval()
    x = torch.randn(2, 4, 9, 12)
    reference = m(x)
    w, b = fold_batchnorm(m)
    bn = m.norm
    by_hand = m.down((x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
    torch.testing.assert_close(torch.nn.functional.linear(x, w, b), by_hand, rtol=1e-5, atol=1e-6)
    swap(m, FoldedLocalMHRA)
    torch.testing.assert_close(m(x), reference, rtol=1e-5, atol=1e-6)
    with pytest.raises(u.UserError, match="optimized for inference"):
        m.train()  # training uses batch statistics: folding would be wrong


@pytest.mark.parametrize("preset", ["tiny_k400_8x64", "tiny_ssv2_8x64"])
def test_inference_variants_match_the_reference(preset):
    model = perturb_(u.create_model(preset, num_classes=9), scale=0.05).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    kept = video.clone()
    reference = model(video)  # grad enabled: the reference path
    params = {n: p for n, p in model.named_parameters()}
    names = list(model.state_dict())
    fast = optimize(copy.deepcopy(model), for_inference=True)
    plain = optimize(copy.deepcopy(model), for_inference=True, inplace=False)
    assert variants_in(fast)["InplaceLocalUniBlock"] == len(model.blocks)
    assert "InplaceLocalUniBlock" not in variants_in(plain)
    with torch.inference_mode():
        torch.testing.assert_close(fast(video), reference, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(plain(video), reference, rtol=1e-5, atol=1e-6)
        from_features = fast.head(fast.forward_features(video))
    assert torch.equal(video, kept)  # the input is never written to
    torch.testing.assert_close(from_features, reference, rtol=1e-5, atol=1e-5)
    # swapping keeps every parameter (the same objects) and every name
    optimize(model, for_inference=True)
    assert all(p is params[n] for n, p in model.named_parameters()) and list(model.state_dict()) == names
    revert(model)
    assert not variants_in(model) and type(model.blocks[0]) is LocalUniBlock


def test_inplace_block_refuses_autograd_and_autocast():
    model = optimize(u.create_model("tiny_k400_8x64"), for_inference=True)
    video = torch.randn(1, 3, 8, 64, 64)
    with pytest.raises(u.UserError, match="inference_mode"):
        model(video)  # grad enabled
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(u.UserError):
        model(video)
    with pytest.raises(u.UserError, match="revert"):
        model.train()


@pytest.mark.parametrize("policy", CHECKPOINT_POLICIES)
@pytest.mark.parametrize("op", ["mhra", "temporal_mhsa", "st_adapter"])
def test_training_variants_give_the_same_gradients(op, policy):
    """For every local operator (the ablation options included): checkpointed blocks and the lean MLP."""
    torch.manual_seed(1)
    opts = dict(num_classes=3, head_dropout=0.0, global_mlp_dropout=0.0, drop_path_rate=0.1, local_op=op)
    a = perturb_(u.create_model("tiny_ssv2_8x64", **opts))
    b = copy.deepcopy(a)
    optimize(b, for_inference=False, grad_checkpointing=3, checkpoint_policy=policy)
    assert [type(blk).__name__.startswith("Checkpoint") for blk in b.blocks] == [True, True, True, False]
    assert all(type(m) is LeanMlp for m in b.modules() if isinstance(m, Mlp))  # no dropout anywhere here
    video = torch.randn(1, 3, 8, 64, 64)
    for m in (a, b):
        torch.manual_seed(2)  # the same drop-path draws
        m.train()
        m(video).square().sum().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-6, msg=n)
    with pytest.raises(u.UserError, match="checkpoint policy"):
        optimize(b, for_inference=False, grad_checkpointing=True, checkpoint_policy="everything")
    with pytest.raises(u.UserError, match="training"):
        optimize(b, for_inference=True, grad_checkpointing=2)


def test_swap_checks_the_reference_class():
    blk = u.create_model("uniformerv2_nano").blocks[0]
    with pytest.raises(TypeError, match="replaces LocalMHRA"):
        swap(blk, FoldedLocalMHRA)
    swap(blk, CheckpointBlock)
    with pytest.raises(TypeError):
        swap(blk, InplaceLocalUniBlock)  # a variant goes back to the reference before another is applied


def test_dpe_choices():
    model = u.create_model("uniformerv2_nano")
    with pytest.raises(u.UserError, match="dpe must be one of"):
        optimize(model, for_inference=True, dpe="fft")
    with pytest.raises(u.UserError, match="triton"):
        optimize(model, for_inference=True, dpe="triton")  # no CUDA here (or no Triton)


def test_bf16_autocast_logits_within_two_percent():
    model = perturb_(u.create_model("tiny_ssv2_8x64", num_classes=50), scale=0.1).eval()
    optimize(model, for_inference=True, inplace=False)  # autocast: the variants without in-place updates
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
        low = optimize(copy.deepcopy(model).to(torch.bfloat16), for_inference=True)(video.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16 and ref.std() > 0.1
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.02, rel


def test_no_graph_breaks_with_each_checkpoint_policy():
    cases = [(None, False), ("save_attention", True), ("block", True), ("branches", True)]
    for policy, train in cases:
        model = u.create_model("uniformerv2_nano", local_mhra="double", num_frames=4).train(train)
        if train:
            optimize(model, for_inference=False, grad_checkpointing=True, checkpoint_policy=policy)
        else:
            optimize(model, for_inference=True, inplace=False)
        explained = torch._dynamo.explain(model)(torch.randn(1, 3, 4, 32, 32))
        assert explained.graph_count == 1 and explained.graph_break_count == 0, (policy, explained.break_reasons)


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

    video = torch.randn(2, 3, 8, 64, 64)
    for train in (False, True):
        model = u.create_model("tiny_ssv2_8x64", drop_path_rate=0.1)
        optimize(model.train(train), for_inference=not train, grad_checkpointing=2 if train else 0)
        with Record() as rec, torch.set_grad_enabled(train), torch.inference_mode(not train):
            out = model(video)
            if train:
                out.sum().backward()
        assert "addmm" in rec.ops or "mm" in rec.ops  # the recorder saw the model's ops
        assert not rec.ops & syncing, (train, rec.ops & syncing)
