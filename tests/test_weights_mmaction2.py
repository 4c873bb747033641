"""MMAction2 checkpoints in and out: safe reading, key mapping, head rows in MMAction2's label order,
logits equal to the official model's class by class, round trips, and what MMAction2 cannot hold."""
import subprocess
import warnings

import numpy as np
import pytest
import torch

import uniformerv2 as u
from uniformerv2.labels import load_labels
from uniformerv2.weights.mmaction2 import (MMACTION2_HEAD_LABELS, is_mmaction2, mmaction2_to_official,
                                           official_to_mmaction2, read_mmaction2, save_mmaction2)

import official_reference as ref
from weightfiles import MM_RENAMES, hand_mmaction2, tiny_official

VIDEO = torch.randn(2, 3, 8, 64, 64)


def _load_converted(tmp_path, path, preset="tiny_k400_8x64", **kw):
    """MMAction2 file -> official layout on disk -> the loader, step by step (``load_model`` does it in one
    call: tests/test_weights_names.py)."""
    sd, meta = read_mmaction2(path)
    official, labels = mmaction2_to_official(sd, meta)
    out = tmp_path / "converted.pyth"
    torch.save(official, out)
    labels = load_labels(labels) if isinstance(labels, str) else labels
    return u.create_model(preset, checkpoint=out, checkpoint_labels=labels, **kw).eval(), labels


def _rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_mmaction2_logits_equal_official_logits_by_class_name(tmp_path):
    src, sd = tiny_official()
    official_logits = ref.forward(sd, VIDEO, patch_size=8, heads=4, return_list=[0, 1, 2, 3],
                                  temporal_downsample=False)  # the independent official forward
    official_names = src.labels  # the official K400 order
    path = tmp_path / "mmaction2.pth"
    torch.save(hand_mmaction2(sd, official_names), path)
    model, file_labels = _load_converted(tmp_path, path)
    assert file_labels == load_labels("kinetics400") and model.labels == official_names
    logits = model(VIDEO)
    assert _rel_err(logits, official_logits) <= 1e-5  # rows mapped back into the official order
    # the same file with its own (MMAction2, alphabetical) order kept: compare class by class by name
    mm_model, _ = _load_converted(tmp_path, path, labels="kinetics400")
    mm_logits = mm_model(VIDEO)
    col = {c: i for i, c in enumerate(official_names)}
    by_name = official_logits[:, [col[c] for c in mm_model.labels]]
    assert _rel_err(mm_logits, by_name) <= 1e-5
    assert mm_model.labels[0] == "abseiling" and official_names[0] == "riding a bike"
    assert not torch.allclose(mm_logits, official_logits)  # the orders really differ


def test_mmaction2_to_ours_to_mmaction2_round_trip_is_exact(tmp_path):
    _, sd = tiny_official(seed=3)
    src, _ = tiny_official(seed=3)
    original = hand_mmaction2(sd, src.labels)
    path = tmp_path / "mm.pth"
    torch.save(original, path)
    model, _ = _load_converted(tmp_path, path)
    back, row_labels = official_to_mmaction2(u.export_official_state_dict(model), model.labels)
    assert row_labels == load_labels("kinetics400")
    assert list(back) == list(original["state_dict"])
    for k, v in original["state_dict"].items():
        assert back[k].shape == v.shape and torch.equal(back[k], v), k
    # and through a file written by save_mmaction2
    out = save_mmaction2(tmp_path / "out.pth", u.export_official_state_dict(model), model.labels)
    again, meta = read_mmaction2(out)
    assert meta == {"dataset_meta": {"classes": load_labels("kinetics400")}}
    assert list(again) == list(original["state_dict"])
    assert all(torch.equal(again[k], v) for k, v in original["state_dict"].items())


def test_official_to_mmaction2_keys_are_mmaction2s():
    _, sd = tiny_official()
    mm, _ = official_to_mmaction2(sd)
    assert set(mm) == {MM_RENAMES.get(k, k) for k in sd}
    assert "backbone.transformer.norm.weight" in mm and "cls_head.fc_cls.bias" in mm
    assert not any(".proj.0." in k or "transformer.proj.2" in k for k in mm)
    assert list(mm)[-2:] == ["cls_head.fc_cls.weight", "cls_head.fc_cls.bias"]
    assert is_mmaction2(mm) and not is_mmaction2(sd)
    back, labels = mmaction2_to_official(mm)
    assert labels == "kinetics400" and list(back) == list(sd)  # official order restored
    assert all(torch.equal(back[k], sd[k]) for k in sd)


@pytest.mark.parametrize("classes,name", sorted((n, lab) for n, lab in MMACTION2_HEAD_LABELS.items()))
def test_standard_heads_are_written_in_mmaction2_label_order(classes, name):
    official_order = {400: "kinetics400_uniformerv2_order", 710: "kinetics710_uniformerv2_order"}.get(classes, name)
    labels = load_labels(official_order)
    _, sd = tiny_official(num_classes=classes, labels=labels)
    mm, row_labels = official_to_mmaction2(sd, labels)
    assert row_labels == load_labels(name)
    from uniformerv2.labels import canonical_name

    where = {canonical_name(c): i for i, c in enumerate(labels)}
    for i in (0, classes // 2, classes - 1):  # row i of the MMAction2 head is that class's official row
        j = where[canonical_name(row_labels[i])]
        assert torch.equal(mm["cls_head.fc_cls.weight"][i], sd["backbone.transformer.proj.2.weight"][j])


def test_custom_heads_keep_their_rows_and_names(tmp_path):
    names = [f"class {i}" for i in range(5)]
    model, sd = tiny_official(labels=names)
    out = save_mmaction2(tmp_path / "custom.pth", sd, names)
    back, meta = read_mmaction2(out)
    official, labels = mmaction2_to_official(back, meta)
    assert labels == names
    assert torch.equal(official["backbone.transformer.proj.2.weight"], sd["backbone.transformer.proj.2.weight"])


def test_frozen_backbone_has_no_mmaction2_form():
    _, sd = tiny_official(frozen_backbone=True)
    with pytest.raises(u.UserError, match="frozen-backbone"):
        official_to_mmaction2(sd)


def test_unknown_tensors_and_non_mmaction2_files_are_refused(tmp_path):
    _, sd = tiny_official()
    mm = hand_mmaction2(sd, tiny_official()[0].labels)
    mm["state_dict"]["neck.fc.weight"] = torch.zeros(2)
    with pytest.raises(u.CheckpointError, match="unknown tensors.*neck.fc.weight"):
        mmaction2_to_official(mm["state_dict"])
    torch.save(sd, tmp_path / "official.pyth")
    with pytest.raises(u.CheckpointError, match="not an MMAction2"):
        read_mmaction2(tmp_path / "official.pyth")
    mm = hand_mmaction2(sd, tiny_official()[0].labels)
    mm["state_dict"]["data_preprocessor.mean"] = torch.full((3, 1, 1, 1), 114.75)  # left by older runners
    official, _ = mmaction2_to_official(mm["state_dict"])
    assert set(official) == set(sd)


# ----------------------------------------------------------------------------- safe reading
class _RunsCode:
    """Unpickling this runs a command (through a module torch does not block)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.check_call, (["touch", self.marker],))


class _SystemCall:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_meta_objects_that_need_code_are_dropped_with_a_warning_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    src, sd = tiny_official()
    ckpt = hand_mmaction2(sd, src.labels, meta={"seed": np.int64(7), "hook": _RunsCode(marker),
                                                "config": "model = dict(type='Recognizer3D')",
                                                "dataset_meta": {"classes": None}, "epoch": 5})
    ckpt["optimizer"] = {"state": {}, "param_groups": [{"lr": np.float64(1e-5)}]}
    path = tmp_path / "mm_meta.pth"
    torch.save(ckpt, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sd2, meta = read_mmaction2(path)
    msg = " ".join(str(w.message) for w in caught)
    assert "meta.hook (" in msg and "check_call)" in msg and "meta.seed" in msg and "optimizer.param_groups[0].lr" in msg
    assert meta == {"config": "model = dict(type='Recognizer3D')", "dataset_meta": {"classes": None}, "epoch": 5}
    assert all(torch.equal(sd2[k], v) for k, v in ckpt["state_dict"].items())
    assert not marker.exists()
    # the payload is real: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_code_among_the_weights_or_blocked_modules_is_refused(tmp_path):
    marker = tmp_path / "ran"
    src, sd = tiny_official()
    ckpt = hand_mmaction2(sd, src.labels)
    ckpt["state_dict"]["backbone.evil"] = _RunsCode(marker)
    torch.save(ckpt, tmp_path / "a.pth")
    with pytest.raises(u.CheckpointError, match="refusing .*backbone.evil \\(.*check_call\\)"):
        read_mmaction2(tmp_path / "a.pth")
    ckpt = hand_mmaction2(sd, src.labels, meta={"x": _SystemCall(marker)})
    torch.save(ckpt, tmp_path / "b.pth")
    with pytest.raises(u.CheckpointError, match="refusing to unpickle .*system"):
        read_mmaction2(tmp_path / "b.pth")
    torch.save({"meta": {"x": _RunsCode(marker)}, "state_dict": hand_mmaction2(sd, src.labels)["state_dict"]},
               tmp_path / "c.pth", _use_new_zipfile_serialization=False)  # torch's legacy (non-zip) format
    with pytest.warns(UserWarning, match="dropped 1 object"):
        read_mmaction2(tmp_path / "c.pth")
    assert not marker.exists()


# ----------------------------------------------------------------------------- real B/16 shapes
@pytest.mark.slow
def test_k400_b16_mmaction2_file_gives_the_official_logits(tmp_path):
    """A K400 B/16 file in MMAction2's layout (random weights, real shapes and label orders), loaded through
    ``load_model`` with and without a preset: the official logits, class by class."""
    torch.manual_seed(0)
    src = u.create_model("k400_b16_8x224").eval()
    with torch.no_grad():
        for k, t in src.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.02)
    sd = u.export_official_state_dict(src)  # the official file's content (loading it exactly: test_weights.py)
    path = tmp_path / "mm_b16.pth"
    torch.save(hand_mmaction2(sd, src.labels), path)
    del sd
    video = torch.randn(1, 3, 8, 224, 224)
    with torch.no_grad():
        official = src(video)
        official_labels = src.labels
        del src
        model = u.load_model(path, preset="k400_b16_8x224").eval()  # the one loader, as --model/--preset do
        logits = model(video)
        assert model.labels == load_labels("kinetics400_uniformerv2_order") == official_labels
        assert model.load_report.format == "mmaction2"
        assert _rel_err(logits, official) <= 1e-5
        del model
        inferred = u.load_model(path).eval()  # no preset: B/16 read off the shapes, rows in the file's order
        assert inferred.cfg.arch == "uniformerv2_b16" and inferred.labels == load_labels("kinetics400")
        col = {c: i for i, c in enumerate(official_labels)}
        assert _rel_err(inferred(video), official[:, [col[c] for c in inferred.labels]]) <= 1e-5
