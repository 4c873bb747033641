"""Weights on disk: official checkpoints, image-ViT formats, our format, and files that must be refused."""
import pickle
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

import uniformerv2 as u
from uniformerv2.labels import canonical_name, load_labels
from uniformerv2.weights.vit import inflate_patch_embed

import official_reference as ref
from test_model import perturb_

VIDEO = torch.randn(2, 3, 8, 64, 64)


def _official_file(tmp_path, preset="tiny_ssv2_8x64", wrap=False, **opts):
    model = perturb_(u.create_model(preset, **opts)).eval()
    sd = u.export_official_state_dict(model)
    path = tmp_path / "official.pyth"
    torch.save({"epoch": 3, "model_state": sd, "optimizer_state": {}} if wrap else sd, path)
    return model, sd, path


@pytest.mark.parametrize("preset", ["tiny_ssv2_8x64", "tiny_k400_8x64"])
def test_official_checkpoint_loads_runs_and_round_trips(tmp_path, preset):
    src, sd, path = _official_file(tmp_path, preset)
    model = u.create_model(preset, checkpoint=path).eval()
    assert model.load_report.format == "official"
    cfg = model.cfg
    expected = ref.forward(sd, VIDEO, patch_size=cfg.patch_size, heads=cfg.num_heads,
                           return_list=cfg.global_layers, temporal_downsample=cfg.temporal_downsample)
    torch.testing.assert_close(model(VIDEO), expected, rtol=1e-4, atol=1e-5)
    back = u.export_official_state_dict(model)
    assert list(back) == list(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


def test_slowfast_wrapped_checkpoint_with_config_object(tmp_path, monkeypatch):
    """SlowFast saves {"model_state", "cfg": CfgNode}; the CfgNode is read inertly, never imported."""
    fake = types.ModuleType("yacs.config")

    class CfgNode(dict):
        pass

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    fake.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "yacs", types.ModuleType("yacs"))
    monkeypatch.setitem(sys.modules, "yacs.config", fake)
    src, sd, _ = _official_file(tmp_path)
    path = tmp_path / "slowfast.pyth"
    torch.save({"epoch": 1, "model_state": sd, "cfg": CfgNode(TRAIN={"BATCH_SIZE": 8})}, path)
    monkeypatch.delitem(sys.modules, "yacs.config")
    model = u.create_model("tiny_ssv2_8x64", checkpoint=path).eval()
    torch.testing.assert_close(model(VIDEO), src(VIDEO))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"backbone.conv1.weight": torch.zeros(1), "x": Evil()}, f)
    with pytest.raises(u.CheckpointError, match="refusing to unpickle"):
        u.create_model("tiny_k400_8x64", checkpoint=path)
    torch.save({"state_dict": {"a": torch.zeros(1)}, "hook": Evil()}, tmp_path / "evil2.pt")
    with pytest.raises(u.CheckpointError, match="refusing to unpickle"):
        u.create_model("tiny_k400_8x64", pretrained=tmp_path / "evil2.pt")
    assert not marker.exists()


def test_truncated_and_garbage_files(tmp_path):
    _, _, path = _official_file(tmp_path)
    data = path.read_bytes()
    (tmp_path / "trunc.pyth").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pyth").write_bytes(b"")
    (tmp_path / "noise.safetensors").write_bytes(b"\x00\x01garbage" * 10)
    for name in ("trunc.pyth", "empty.pyth", "noise.safetensors", "missing.pyth"):
        with pytest.raises(u.CheckpointError):
            u.create_model("tiny_ssv2_8x64", checkpoint=tmp_path / name)


def unreadable_weights(folder) -> dict:
    """Files users give as weights by mistake, each with what the one-line refusal must say about it."""
    from safetensors.torch import save_file as st_save
    from videogen import write_video

    folder.mkdir(parents=True, exist_ok=True)
    zipped, legacy, st = folder / "zip.pth", folder / "legacy.pth", folder / "st.safetensors"
    torch.save({"a": torch.randn(64, 64)}, zipped)
    torch.save({"a": torch.randn(64, 64)}, legacy, _use_new_zipfile_serialization=False)
    st_save({"a": torch.randn(64, 64)}, st)
    files = {
        "hello.pyth": (b"hello\n", "is a text file (it begins 'hello'), not a weights file"),
        "url.pyth": (b"https://huggingface.co/Andy1621/uniformerv2/resolve/main/k400.pyth\n",
                     "is a text file holding a URL (https://huggingface.co/Andy1621/uniformerv2/resolve/main/"
                     "k400.pyth), not a weights file: download that URL"),
        "page.pth": (b"\n<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>x</body></html>\n",
                     "is an HTML page, not a weights file"),
        "lfs.pyth": (b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a21\nsize 458289355\n",
                     "is a Git LFS pointer"),
        "empty.pyth": (b"", "is empty (0 bytes)"),
        "cut_zip.pth": (zipped.read_bytes()[:9000], "is truncated: a zip archive"),
        "cut_legacy.pth": (legacy.read_bytes()[:9000], "is damaged or truncated"),
        "cut.safetensors": (st.read_bytes()[:9000], "is truncated: a safetensors file of 16,"),
    }
    out = {}
    for name, (data, says) in files.items():
        (folder / name).write_bytes(data)
        out[name] = (folder / name, says)
    out["clip.mp4"] = (write_video(folder / "clip.mp4", 8), "is a video (MP4/QuickTime), not a weights file")
    return out


def test_unreadable_weights_say_what_the_file_is(tmp_path):
    """Every way in (a checkpoint with a preset, a file without one, image weights) refuses the file in one line
    that names what it is: never a KeyError from the unpickler, never "refusing to unpickle ... run code"."""
    for name, (path, says) in unreadable_weights(tmp_path).items():
        for load in (lambda: u.create_model("tiny_k400_8x64", checkpoint=path),
                     lambda: u.load_model(path, need_recipe=True), lambda: u.load_model(path),
                     lambda: u.create_model("tiny_k400_8x64", pretrained=path)):
            with pytest.raises(u.CheckpointError) as e:
                load()
            msg = str(e.value)
            assert msg.startswith(str(path)) and says in msg and "\n" not in msg, (name, msg)
            assert "unpickle" not in msg and "without a config" not in msg, (name, msg)


def test_checkpoint_of_another_arch_is_refused(tmp_path):
    _, _, path = _official_file(tmp_path, "tiny_ssv2_8x64")
    with pytest.raises(u.CheckpointError, match="another architecture.*local MHRA"):
        u.create_model("tiny_k400_8x64", checkpoint=path)
    with pytest.raises(u.CheckpointError, match="another architecture"):
        u.create_model("uniformerv2_nano", checkpoint=path)


def test_k710_head_maps_rows_by_class_name(tmp_path):
    k710 = load_labels("kinetics710_uniformerv2_order")
    src, sd, path = _official_file(tmp_path, "uniformerv2_tiny", num_classes=710)
    w710 = sd["backbone.transformer.proj.2.weight"]
    where = {canonical_name(c): i for i, c in enumerate(k710)}
    for labels in ("kinetics400", "kinetics600", "kinetics700"):
        names = load_labels(labels)
        model = u.create_model("uniformerv2_tiny", num_classes=len(names), labels=labels, checkpoint=path)
        rows = [where[canonical_name(c)] for c in names]
        assert torch.equal(model.head.fc.weight, w710[rows])
        assert "mapped" in model.load_report.head
    # the official K400 order keeps the first 400 rows, as the official frozen recipe does
    model = u.create_model("uniformerv2_tiny", num_classes=400, labels="kinetics400_uniformerv2_order",
                           checkpoint=path)
    assert torch.equal(model.head.fc.weight, w710[:400])


def test_head_reset_and_unmappable_head_warns(tmp_path):
    src, sd, path = _official_file(tmp_path, "uniformerv2_tiny", num_classes=9)
    model = u.create_model("uniformerv2_tiny", num_classes=9, checkpoint=path, head="reset")
    assert not torch.equal(model.head.fc.weight, sd["backbone.transformer.proj.2.weight"])
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight,
                               sd["backbone.transformer.resblocks.0.attn.in_proj_weight"])
    with pytest.warns(UserWarning, match="re-initialised"):
        model = u.create_model("uniformerv2_tiny", num_classes=5, checkpoint=path)
    assert model.load_report.head == "reset"


def test_save_and_from_pretrained_round_trip(tmp_path):
    model = perturb_(u.create_model("tiny_ssv2_8x64")).eval()
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    again = u.from_pretrained(tmp_path / "m").eval()
    assert again.labels == model.labels and again.preset == "tiny_ssv2_8x64"
    assert again.data_config.mean == [0.45] * 3
    assert torch.equal(again(VIDEO), model(VIDEO))
    # a model dir is also accepted as checkpoint=
    third = u.create_model("tiny_ssv2_8x64", checkpoint=tmp_path / "m").eval()
    assert torch.equal(third(VIDEO), model(VIDEO))


# ----------------------------------------------------------------------------- image-ViT formats
def _clip_visual(width=64, layers=4, patch=8, grid=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.05  # noqa: E731
    sd = {"conv1.weight": r(width, 3, patch, patch), "class_embedding": r(width),
          "positional_embedding": r(grid * grid + 1, width), "ln_pre.weight": 1 + r(width), "ln_pre.bias": r(width)}
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        sd.update({p + "attn.in_proj_weight": r(3 * width, width), p + "attn.in_proj_bias": r(3 * width),
                   p + "attn.out_proj.weight": r(width, width), p + "attn.out_proj.bias": r(width),
                   p + "ln_1.weight": 1 + r(width), p + "ln_1.bias": r(width),
                   p + "mlp.c_fc.weight": r(4 * width, width), p + "mlp.c_fc.bias": r(4 * width),
                   p + "mlp.c_proj.weight": r(width, 4 * width), p + "mlp.c_proj.bias": r(width),
                   p + "ln_2.weight": 1 + r(width), p + "ln_2.bias": r(width)})
    sd.update({"ln_post.weight": r(width), "ln_post.bias": r(width), "proj": r(width, 32)})
    return sd


def _as_timm(sd):
    out = {"patch_embed.proj.weight": sd["conv1.weight"], "cls_token": sd["class_embedding"].view(1, 1, -1),
           "pos_embed": sd["positional_embedding"][None], "norm_pre.weight": sd["ln_pre.weight"],
           "norm_pre.bias": sd["ln_pre.bias"], "norm.weight": sd["ln_post.weight"], "norm.bias": sd["ln_post.bias"],
           "head.weight": sd["proj"].t().contiguous()}
    names = {"attn.in_proj_": "attn.qkv.", "attn.out_proj.": "attn.proj.", "ln_1.": "norm1.", "ln_2.": "norm2.",
             "mlp.c_fc.": "mlp.fc1.", "mlp.c_proj.": "mlp.fc2."}
    for k, v in sd.items():
        if k.startswith("transformer.resblocks."):
            i, rest = k.split(".")[2], k.split(".", 3)[3]
            for a, b in names.items():
                if rest.startswith(a):
                    out[f"blocks.{i}.{b}{rest[len(a):]}"] = v
    return out


def _as_hf(sd, width=64):
    out = {"vision_model.embeddings.patch_embedding.weight": sd["conv1.weight"],
           "vision_model.embeddings.class_embedding": sd["class_embedding"],
           "vision_model.embeddings.position_embedding.weight": sd["positional_embedding"],
           "vision_model.embeddings.position_ids": torch.arange(65)[None],
           "vision_model.pre_layrnorm.weight": sd["ln_pre.weight"], "vision_model.pre_layrnorm.bias": sd["ln_pre.bias"],
           "vision_model.post_layernorm.weight": sd["ln_post.weight"],
           "visual_projection.weight": sd["proj"].t().contiguous(), "text_model.embeddings.token_embedding.weight":
           torch.zeros(10, 8)}
    names = {"attn.out_proj.": "self_attn.out_proj.", "ln_1.": "layer_norm1.", "ln_2.": "layer_norm2.",
             "mlp.c_fc.": "mlp.fc1.", "mlp.c_proj.": "mlp.fc2."}
    for k, v in sd.items():
        if not k.startswith("transformer.resblocks."):
            continue
        i, rest = k.split(".")[2], k.split(".", 3)[3]
        p = f"vision_model.encoder.layers.{i}."
        if rest.startswith("attn.in_proj_"):
            kind = rest.rsplit("_", 1)[1]
            for j, n in enumerate("qkv"):
                out[f"{p}self_attn.{n}_proj.{kind}"] = v[j * width:(j + 1) * width].clone()
        else:
            for a, b in names.items():
                if rest.startswith(a):
                    out[p + b + rest[len(a):]] = v
    return out


class _Tree(torch.nn.Module):
    """A module whose parameters carry given dotted names (to write a TorchScript archive like OpenAI's)."""

    def __init__(self, sd):
        super().__init__()
        for name, t in sd.items():
            mod = self
            *path, leaf = name.split(".")
            for part in path:
                if not hasattr(mod, part):
                    mod.add_module(part, torch.nn.Module())
                mod = getattr(mod, part)
            mod.register_parameter(leaf, torch.nn.Parameter(t.clone(), requires_grad=False))

    def forward(self, x):
        return x


def test_four_image_vit_formats_give_identical_backbones(tmp_path):
    sd = _clip_visual()
    openai = {f"visual.{k}": v for k, v in sd.items()}
    openai.update({"positional_embedding": torch.zeros(77, 16), "text_projection": torch.zeros(16, 32),
                   "logit_scale": torch.ones([])})
    torch.save(openai, tmp_path / "openai.pt")
    torch.jit.script(_Tree(openai)).save(str(tmp_path / "openai_jit.pt"))
    torch.save({"epoch": 32, "state_dict": {f"module.{k}": v for k, v in openai.items()}}, tmp_path / "open_clip.pt")
    save_file({k: v.contiguous() for k, v in _as_timm(sd).items()}, tmp_path / "timm.safetensors")
    save_file({k: v.contiguous() for k, v in _as_hf(sd).items()}, tmp_path / "hf.safetensors")
    torch.save(_as_hf(sd), tmp_path / "pytorch_model.bin")

    models = {}
    for name in ("openai.pt", "openai_jit.pt", "open_clip.pt", "timm.safetensors", "hf.safetensors",
                 "pytorch_model.bin"):
        models[name] = u.create_model("tiny_ssv2_8x64", pretrained=tmp_path / name)
    formats = {n: m.load_report.format for n, m in models.items()}
    assert formats["openai_jit.pt"] == "clip" and formats["timm.safetensors"] == "timm"
    assert formats["hf.safetensors"] == "hf"
    first = models["openai.pt"].state_dict()
    assert torch.equal(first["blocks.2.attn.qkv.weight"], sd["transformer.resblocks.2.attn.in_proj_weight"])
    assert torch.equal(first["stem.weight"], inflate_patch_embed(sd["conv1.weight"], 3))
    assert torch.equal(first["stem.weight"][:, :, 1], sd["conv1.weight"]) and first["stem.weight"][:, :, 0].abs().sum() == 0
    for name, m in models.items():
        other = m.state_dict()
        for k, v in first.items():
            if k.split(".")[0] in ("stem", "cls_token", "pos_embed", "norm_pre", "blocks") and "lmhra" not in k:
                assert torch.equal(v, other[k]), (name, k)
    # the UniFormerV2 modules keep their zero-inits
    m = models["timm.safetensors"]
    assert torch.all(m.query == 0) and torch.all(m.blocks[0].lmhra1.up.weight == 0)
    assert torch.all(m.global_blocks[0].attn.proj.weight == 0)
    report = models["openai.pt"].load_report
    assert "ln_post.weight" not in report.loaded and report.missing == []


def test_position_embedding_is_interpolated(tmp_path):
    sd = _clip_visual(grid=6)  # a 48px model's grid into a 64px model
    torch.save({f"visual.{k}": v for k, v in sd.items()}, tmp_path / "clip.pt")
    model = u.create_model("uniformerv2_tiny", pretrained=tmp_path / "clip.pt")
    pos = model.pos_embed.detach()
    assert pos.shape == (65, 64)
    assert torch.equal(pos[0], sd["positional_embedding"][0])
    grid = sd["positional_embedding"][1:].reshape(1, 6, 6, 64).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(pos[1:], expected.permute(0, 2, 3, 1).reshape(64, 64))
    assert any("pos_embed resized" in a for a in model.load_report.adapted)


def test_nothing_matched_fails_clearly(tmp_path):
    sd = _clip_visual(width=32)
    torch.save({f"visual.{k}": v for k, v in sd.items()}, tmp_path / "clip32.pt")
    with pytest.raises(u.CheckpointError, match="shape"):
        u.create_model("uniformerv2_tiny", pretrained=tmp_path / "clip32.pt")
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(u.CheckpointError, match="not a recognised image-ViT"):
        u.create_model("uniformerv2_tiny", pretrained=tmp_path / "other.pt")
    torch.save({f"visual.{k}": v for k, v in _clip_visual().items()}, tmp_path / "clip.pt")
    with pytest.raises(u.CheckpointError, match="image-ViT checkpoint.*pretrained="):
        u.create_model("uniformerv2_tiny", checkpoint=tmp_path / "clip.pt")


def test_load_model_reads_the_architecture_off_a_configless_checkpoint(tmp_path):
    src, sd, path = _official_file(tmp_path, "tiny_ssv2_8x64")
    model = u.load_model(path).eval()
    assert (model.cfg.num_heads, model.cfg.local_mhra, model.cfg.temporal_downsample) == (4, "double", True)
    assert model.cfg.global_layers == [1, 2, 3] and model.cfg.num_frames == 16
    video = torch.randn(1, 3, 16, 64, 64)
    src16 = u.create_model("tiny_ssv2_8x64", num_frames=16, checkpoint=path).eval()
    torch.testing.assert_close(model(video), src16(video))


def test_fusions_without_an_official_form_are_refused():
    for fusion in ("parallel", "hierarchical_q", "hierarchical_kv"):
        with pytest.raises(ValueError, match="official"):
            u.export_official_state_dict(u.create_model("uniformerv2_nano", fusion=fusion))
