"""The model against independent computations: each block, zero-init identities, the official forward."""
import pytest
import torch
import torch.nn.functional as F

import uniformerv2 as u
from uniformerv2.model.layers import DPE, CrossAttention, LocalMHRA

import official_reference as ref

torch.manual_seed(0)


def perturb_(model, scale=0.05, seed=0):
    """Give every tensor (zero-inits and BN statistics included) random non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                noise = torch.randn(t.shape, generator=g) * scale
                t.copy_(noise.abs() + 0.5 if "running_var" in name else t + noise)
    return model


def test_local_mhra_matches_conv3d_on_official_layout():
    m = perturb_(LocalMHRA(24, 1.5)).eval()
    x = torch.randn(2, 5, 9, 24)  # (B, T, HW, C)
    sd = {f"m.pos_embed.0.{k}": getattr(m.norm, k) for k in ("weight", "bias", "running_mean", "running_var")}
    sd.update({"m.pos_embed.1.weight": m.down.weight[..., None, None, None], "m.pos_embed.1.bias": m.down.bias,
               "m.pos_embed.2.weight": m.dwconv.weight[:, None, :, None, None], "m.pos_embed.2.bias": m.dwconv.bias,
               "m.pos_embed.3.weight": m.up.weight[..., None, None, None], "m.pos_embed.3.bias": m.up.bias})
    ncthw = x.view(2, 5, 3, 3, 24).permute(0, 4, 1, 2, 3)
    expected = ref.local_mhra(ncthw, sd, "m").permute(0, 2, 3, 4, 1).reshape(2, 5, 9, 24)
    assert m.down.out_features == 16  # int(24 // 1.5)
    torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-6)


def test_dpe_matches_depthwise_conv3d():
    m = perturb_(DPE(8))
    tokens = torch.randn(2 * 4, 1 + 3 * 3, 8)  # (B·T, 1 + H·W, C)
    frames = tokens.view(2, 4, 10, 8)
    grid = frames[:, :, 1:].reshape(2, 4, 3, 3, 8)  # (B, T, H, W, C)
    w, b = m.conv.weight, m.conv.bias
    expected = torch.zeros_like(grid)
    padded = F.pad(grid, (0, 0, 1, 1, 1, 1, 1, 1))
    for dt in range(3):
        for dh in range(3):
            for dw in range(3):
                expected += padded[:, dt:dt + 4, dh:dh + 3, dw:dw + 3] * w[:, 0, dt, dh, dw]
    out = m(tokens, 4).view(2, 4, 10, 8)  # keys/values (B, T·L, C), frames in time order
    torch.testing.assert_close(out[:, :, 1:], (grid + expected + b).reshape(2, 4, 9, 8), rtol=1e-5, atol=1e-6)
    assert torch.equal(out[:, :, 0], frames[:, :, 0])  # class tokens get no position encoding


def test_cross_attention_matches_explicit_softmax():
    m = perturb_(CrossAttention(16, 4), scale=0.3)
    q, kv = torch.randn(3, 1, 16), torch.randn(3, 10, 16)
    qs, ks, vs = m.q(q), *m.kv(kv).chunk(2, -1)
    out = []
    for h in range(4):
        sl = slice(4 * h, 4 * h + 4)
        att = torch.softmax(qs[..., sl] @ ks[..., sl].transpose(1, 2) / 2.0, -1)
        out.append(att @ vs[..., sl])
    torch.testing.assert_close(m(q, kv), m.proj(torch.cat(out, -1)), rtol=1e-5, atol=1e-6)


def _vit_per_frame_cls(model, video):
    """A plain ViT run on each frame separately (explicit attention), returning last-layer class tokens."""
    b, _, t, _, _ = video.shape
    outs = []
    for f in range(t):
        x = F.conv2d(video[:, :, f], model.stem.weight[:, :, 0], stride=model.cfg.patch_size)
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([model.cls_token.expand(b, 1, -1), x], 1) + model.pos_embed
        x = model.norm_pre(x)
        for blk in model.blocks:
            y = blk.norm1(x)
            qkv = blk.attn.qkv(y).chunk(3, -1)
            heads = blk.attn.num_heads
            split = [z.view(b, -1, heads, z.shape[-1] // heads).transpose(1, 2) for z in qkv]
            att = torch.softmax(split[0] @ split[1].transpose(-1, -2) / split[0].shape[-1] ** 0.5, -1)
            x = x + blk.attn.proj((att @ split[2]).transpose(1, 2).reshape(b, -1, x.shape[-1]))
            x = x + blk.mlp(blk.norm2(x))
        outs.append(x[:, 0])
    return torch.stack(outs, 1)


def test_fresh_kinetics_model_is_the_per_frame_vit():
    model = u.create_model("tiny_k400_8x64", num_classes=7).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    cls = _vit_per_frame_cls(model, video)  # (B, T, C)
    # zero query through every global block; balance 0 -> w = 0.5
    expected = model.head(0.5 * cls.mean(1))
    torch.testing.assert_close(model(video), expected, rtol=1e-4, atol=1e-5)
    assert torch.all(model.query == 0)


def test_fresh_local_mhra_is_identity():
    with_local = u.create_model("tiny_ssv2_8x64").eval()
    without = u.create_model("tiny_ssv2_8x64", local_mhra="none").eval()
    without.load_state_dict({k: v for k, v in with_local.state_dict().items() if "lmhra" not in k})
    video = torch.randn(1, 3, 8, 64, 64)
    torch.testing.assert_close(with_local(video), without(video), rtol=0, atol=0)
    assert with_local.stem.weight.shape[2] == 3 and with_local.cfg.time_steps == 4


@pytest.mark.parametrize("preset", ["tiny_k400_8x64", "tiny_ssv2_8x64"])
def test_matches_independent_official_forward(preset):
    model = perturb_(u.create_model(preset, num_classes=11)).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    cfg = model.cfg
    expected = ref.forward(u.export_official_state_dict(model), video, patch_size=cfg.patch_size,
                           heads=cfg.num_heads, return_list=cfg.global_layers,
                           temporal_downsample=cfg.temporal_downsample)
    torch.testing.assert_close(model(video), expected, rtol=1e-4, atol=1e-5)


def test_frozen_backbone_uses_query_only():
    model = perturb_(u.create_model("uniformerv2_tiny", frozen_backbone=True, num_classes=5)).eval()
    assert model.balance is None
    assert not any(p.requires_grad for p in model.backbone_parameters())
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"dpe", "global_blocks", "query", "head"}
    video = torch.randn(1, 3, 8, 64, 64)
    cfg = model.cfg
    expected = ref.forward(u.export_official_state_dict(model), video, patch_size=8, heads=cfg.num_heads,
                           return_list=cfg.global_layers, temporal_downsample=False)
    torch.testing.assert_close(model(video), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fusion", ["parallel", "hierarchical_q", "hierarchical_kv"])
def test_fusion_variants(fusion):
    model = u.create_model("uniformerv2_tiny", fusion=fusion, num_classes=5).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    # Fresh: every variant starts as the frame-class-token path (video token 0).
    cls = _vit_per_frame_cls(model, video)
    torch.testing.assert_close(model.forward_features(video), 0.5 * cls.mean(1), rtol=1e-4, atol=1e-5)
    perturb_(model)
    # Each stage must matter: changing the last global block changes the output.
    before = model(video)
    with torch.no_grad():
        model.global_blocks[-1].mlp.fc2.bias.add_(1.0)
    assert not torch.allclose(before, model(video))
    assert fusion == "parallel" or model.query.shape[0] == len(model.cfg.global_layers)


def test_parallel_fusion_formula():
    model = perturb_(u.create_model("uniformerv2_tiny", fusion="parallel", num_classes=5)).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    feats, x = [], model.embed(video)
    for i, blk in enumerate(model.blocks):
        x = blk(x, 8)
        if i in model.cfg.global_layers:
            j = model.cfg.global_layers.index(i)
            feats.append(model.global_blocks[j](model.query[0].expand(2, -1, -1), model.dpe[j](x, 8)))
    token = model.query[0, 0] + model.fuse_proj(torch.cat(feats, 1).flatten(1))
    w = torch.sigmoid(model.balance)
    expected = (1 - w) * token + w * x.view(2, 8, -1, 64)[:, :, 0].mean(1)
    torch.testing.assert_close(model.forward_features(video), expected, rtol=1e-5, atol=1e-6)


def test_b16_shapes_and_parameter_counts():
    model = u.create_model("k400_b16_8x224").eval()
    assert sum(p.numel() for p in model.parameters()) == 114_552_208  # official K400 B/16
    sd = u.export_official_state_dict(model)
    assert len(sd) == 219
    assert sd["backbone.conv1.weight"].shape == (768, 3, 1, 16, 16)
    assert sd["backbone.positional_embedding"].shape == (197, 768)
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 8, 224, 224))
    assert logits.shape == (1, 400) and torch.isfinite(logits).all()


@pytest.mark.parametrize("preset,params", [("k400_l14_8x224", 354_099_600), ("ssv2_b16_16x224", 162_992_814)])
def test_large_parameter_counts(preset, params):
    with torch.device("meta"):
        model = u.create_model(preset)
    assert sum(p.numel() for p in model.parameters()) == params


def test_wrong_input_is_a_clear_error():
    model = u.create_model("tiny_k400_8x64")
    with pytest.raises(u.UserError, match="built for 8 frames, got 16"):
        model(torch.randn(1, 3, 16, 64, 64))
    with pytest.raises(u.UserError, match="built for 64x64 input, got 96x96"):
        model(torch.randn(1, 3, 8, 96, 96))
    with pytest.raises(u.UserError, match=r"\(B, 3, T, H, W\)"):
        model(torch.randn(3, 8, 64, 64))


def test_unknown_names_and_options():
    with pytest.raises(u.UserError, match="unknown model or preset"):
        u.create_model("uniformerv3_b16")
    with pytest.raises(u.UserError, match="unknown model option"):
        u.create_model("uniformerv2_tiny", not_an_option=1)
    with pytest.raises(u.UserError, match="fusion must be"):
        u.create_model("uniformerv2_tiny", fusion="diagonal")
    with pytest.raises(u.UserError, match="global_layers"):
        u.create_model("uniformerv2_tiny", global_layers=[7])
    with pytest.raises(u.UserError, match="unknown preset"):
        u.get_preset("k400_x99")


def test_presets_cover_the_official_zoo():
    names = set(u.list_presets())
    for n in ["k400_b16_8x224", "k400_l14_8x224", "k400_l14_16x224", "k400_l14_32x336", "k710_b16_8x224",
              "ssv2_b16_16x224", "ssv2_l14_32x224", "sthv1_b16_16x224", "mit_b16_8x224", "anet_l14_16x224",
              "k400_frozen_l14_8x336"]:
        assert n in names
    ssv2 = u.get_preset("ssv2_b16_16x224")
    assert ssv2.model["local_mhra"] == "double" and ssv2.model["temporal_downsample"]
    assert ssv2.model["global_layers"] == list(range(4, 12)) and not ssv2.flip and ssv2.bgr
    assert (ssv2.test_clips, ssv2.test_crops) == (1, 3)
    k400 = u.get_preset("k400_b16_8x224")
    assert k400.mean == (0.45,) * 3 and k400.std == (0.225,) * 3 and (k400.test_clips, k400.test_crops) == (4, 3)
    model = u.create_model("k400_b16_8x224")
    assert model.labels[:2] == ["riding a bike", "marching"]


def test_drop_path_official_masks():
    model = u.create_model("uniformerv2_tiny", drop_path_rate=0.5, num_classes=3).train()
    blk = model.blocks[-1]
    x = torch.zeros(4 * 8, 65, 64)
    torch.manual_seed(3)
    out = x + blk.drop_branch(torch.ones_like(x), 8)
    # one draw per token position, shared by every frame and clip: values 0 or 1/keep per token
    per_token = out[:, :, 0]
    assert torch.all(per_token == per_token[:1])
    assert set(per_token[0].unique().tolist()) <= {0.0, 2.0}


def test_no_graph_breaks_under_torch_compile():
    for preset, train in (("tiny_ssv2_8x64", False), ("tiny_k400_8x64", True)):
        model = u.create_model(preset).train(train)
        explained = torch._dynamo.explain(model)(torch.randn(2, 3, 8, 64, 64))
        assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
