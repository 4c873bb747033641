"""The ablation options of the paper (local_op: temporal MHSA / ST-Adapter; dpe=False): each operator against
an independent computation, identity at init, learning on the synthetic task, save/load, refusal of the
official export, options read off tensor names, and the speed variants against the reference."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F

import uniformerv2 as u
from uniformerv2.accel import optimize, revert, variants_in
from uniformerv2.factory import infer_options
from uniformerv2.model.layers import LocalMHRA, STAdapter, TemporalMHSA
from uniformerv2.synth import render_clip

from test_model import perturb_

OPS = {"temporal_mhsa": TemporalMHSA, "st_adapter": STAdapter}


def test_temporal_mhsa_is_attention_over_time_per_position():
    m = perturb_(TemporalMHSA(16, 4), scale=0.3)
    x = torch.randn(2, 5, 9, 16)  # (B, T, H·W, C)
    y = m.norm(x)
    expected = torch.empty_like(x)
    for b in range(2):
        for n in range(9):  # every spatial position on its own: a sequence of T = 5 tokens
            q, k, v = m.attn.qkv(y[b, :, n]).chunk(3, -1)
            heads = []
            for h in range(4):
                sl = slice(4 * h, 4 * h + 4)
                att = torch.softmax(q[:, sl] @ k[:, sl].T / 2.0, -1)
                heads.append(att @ v[:, sl])
            expected[b, :, n] = m.attn.proj(torch.cat(heads, -1))
    torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-6)
    # order in, order out: permuting the frames permutes the update (no temporal position of its own)
    perm = torch.tensor([3, 0, 4, 2, 1])
    torch.testing.assert_close(m(x[:, perm]), m(x)[:, perm], rtol=1e-5, atol=1e-6)


def test_st_adapter_is_down_depthwise_conv3d_up():
    m = perturb_(STAdapter(12), scale=0.3)
    assert (m.down.out_features, tuple(m.conv.kernel_size), m.conv.groups) == (6, (3, 3, 3), 6)
    x = torch.randn(2, 4, 9, 12)  # (B, T, 3·3, C)
    h = m.down(x).view(2, 4, 3, 3, 6)  # (B, T, H, W, C')
    padded = F.pad(h, (0, 0, 1, 1, 1, 1, 1, 1))
    conv = torch.zeros_like(h) + m.conv.bias
    for dt in range(3):
        for dh in range(3):
            for dw in range(3):
                conv += padded[:, dt:dt + 4, dh:dh + 3, dw:dw + 3] * m.conv.weight[:, 0, dt, dh, dw]
    torch.testing.assert_close(m(x), m.up(conv.reshape(2, 4, 9, 6)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("placement", ["single", "double"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_fresh_local_operator_is_identity(op, placement):
    with_op = u.create_model("tiny_ssv2_8x64", local_op=op, local_mhra=placement).eval()
    without = u.create_model("tiny_ssv2_8x64", local_mhra="none").eval()
    without.load_state_dict({k: v for k, v in with_op.state_dict().items() if "lmhra" not in k})
    video = torch.randn(1, 3, 8, 64, 64)
    torch.testing.assert_close(with_op(video), without(video), rtol=0, atol=0)
    blk = with_op.blocks[0]
    assert type(blk.lmhra1) is OPS[op] and (blk.lmhra2 is not None) == (placement == "double")


def test_no_dpe_reads_the_raw_tokens():
    with_dpe = perturb_(u.create_model("tiny_ssv2_8x64", num_classes=5)).eval()
    no_dpe = u.create_model("tiny_ssv2_8x64", num_classes=5, dpe=False).eval()
    assert len(no_dpe.dpe) == 0 and not any(k.startswith("dpe.") for k in no_dpe.state_dict())
    no_dpe.load_state_dict({k: v for k, v in with_dpe.state_dict().items() if not k.startswith("dpe.")})
    video = torch.randn(2, 3, 8, 64, 64)
    assert not torch.allclose(no_dpe(video), with_dpe(video), atol=1e-3)
    with torch.no_grad():  # a DPE that adds zero is no DPE
        for m in with_dpe.dpe:
            m.conv.weight.zero_()
            m.conv.bias.zero_()
    torch.testing.assert_close(no_dpe(video), with_dpe(video), rtol=1e-5, atol=1e-6)


def test_bad_values_are_clear_errors():
    with pytest.raises(u.UserError, match="local_op must be one of"):
        u.create_model("uniformerv2_nano", local_op="timesformer")
    with pytest.raises(u.UserError, match="dpe must be true or false"):
        u.create_model("uniformerv2_nano", dpe="yes")


def _reversal_batch(frames=8, size=32, pairs=4):
    """Clips of the synthetic benchmark's "moving left" / "moving right": the same frames in opposite order."""
    clips, labels = [], []
    for k in range(pairs):
        for label, name in enumerate(("moving left", "moving right")):
            clip = torch.from_numpy(render_clip(name, k, frames=frames, size=size).copy())
            clips.append((clip.permute(3, 0, 1, 2).float() / 255 - 0.45) / 0.225)
            labels.append(label)
    return torch.stack(clips), torch.tensor(labels)


NEW_OPTIONS = {
    "temporal_mhsa": dict(local_op="temporal_mhsa", local_mhra="double"),
    "st_adapter": dict(local_op="st_adapter", local_mhra="double"),
    # without DPE the global blocks see no order: the local MHRA gives it
    "no_dpe": dict(dpe=False, local_mhra="single"),
}


@pytest.mark.parametrize("name", sorted(NEW_OPTIONS))
def test_new_options_train_save_and_load(name, tmp_path):
    torch.manual_seed(0)
    model = u.create_model("uniformerv2_nano", num_classes=2, head_dropout=0.0, global_mlp_dropout=0.0,
                           **NEW_OPTIONS[name])
    video, labels = _reversal_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    local = [p for n, p in model.named_parameters() if "lmhra" in n]
    losses = []
    for step in range(40):
        loss = F.cross_entropy(model(video), labels)
        opt.zero_grad()
        loss.backward()
        if step == 0 and local:  # the zero-initialised operator receives a gradient from the first step
            assert sum(float(p.grad.abs().sum()) for p in local) > 0
        opt.step()
        losses.append(float(loss.detach()))
    # identical frames in both classes: only the order separates them (chance: ln 2 = 0.69), and the model learns it
    assert losses[0] > 0.6 and min(losses[-5:]) < 0.7 * losses[0], losses[::5]
    model.eval()
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["model"]
    assert {k: saved[k] for k in NEW_OPTIONS[name]} == NEW_OPTIONS[name]
    loaded = u.from_pretrained(tmp_path / "m").eval()
    assert torch.equal(loaded(video), model(video))


@pytest.mark.parametrize("name", sorted(NEW_OPTIONS))
def test_options_are_read_off_tensor_names_and_the_official_export_refuses(name, tmp_path, capsys):
    from uniformerv2.cli import main

    model = perturb_(u.create_model("uniformerv2_nano", num_classes=3, **NEW_OPTIONS[name])).eval()
    inferred = infer_options(model.state_dict())
    assert {k: inferred[k] for k in ("local_op", "local_mhra", "dpe")} == {
        "local_op": model.cfg.local_op, "local_mhra": model.cfg.local_mhra, "dpe": model.cfg.dpe}
    torch.save(model.state_dict(), tmp_path / "weights.pt")  # a bare state dict: no config beside it
    from_file = u.load_model(tmp_path / "weights.pt").eval()
    video = torch.randn(1, 3, 8, 32, 32)
    torch.testing.assert_close(from_file(video), model(video), rtol=0, atol=0)
    with pytest.raises(ValueError, match="no official form"):
        u.export_official_state_dict(model)
    model.save_pretrained(tmp_path / "m")
    assert main(["convert", str(tmp_path / "m"), str(tmp_path / "out.pyth"), "--to", "official"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("uniformerv2: error:") and "no official form" in err and "\n" not in err
    assert not (tmp_path / "out.pyth").exists()


@pytest.mark.parametrize("name", sorted(NEW_OPTIONS))
def test_inference_variants_match_the_reference(name):
    # a mix: the new option's blocks beside the paper's local MHRA would need two configs; the model here has
    # the option in every block, and the in-place block is applied only where it knows the local operator
    model = perturb_(u.create_model("tiny_ssv2_8x64", num_classes=7, **NEW_OPTIONS[name]), scale=0.05).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    reference = model(video)
    fast = optimize(copy.deepcopy(model), for_inference=True)
    plain = optimize(copy.deepcopy(model), for_inference=True, inplace=False)
    with_mhra = isinstance(model.blocks[0].lmhra1, LocalMHRA)
    assert variants_in(fast).get("InplaceLocalUniBlock", 0) == (len(model.blocks) if with_mhra else 0)
    assert variants_in(fast).get("FoldedLocalMHRA", 0) == (len(model.blocks) if with_mhra else 0)
    with torch.inference_mode():
        torch.testing.assert_close(fast(video), reference, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(plain(video), reference, rtol=1e-5, atol=1e-6)
    revert(fast)
    assert not variants_in(fast)
