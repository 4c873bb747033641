"""Real weight files for tests, written in the published layouts from tiny random models.

``hand_mmaction2`` writes MMAction2's layout straight from its published description (two renames, head
rows in MMAction2's label order), independently of ``uniformerv2.weights.mmaction2``.
"""
from __future__ import annotations

import torch

import uniformerv2 as u
from uniformerv2.labels import load_labels

from test_model import perturb_
from test_weights import _clip_visual, _Tree

MM_RENAMES = {"backbone.transformer.proj.0.weight": "backbone.transformer.norm.weight",
              "backbone.transformer.proj.0.bias": "backbone.transformer.norm.bias",
              "backbone.transformer.proj.2.weight": "cls_head.fc_cls.weight",
              "backbone.transformer.proj.2.bias": "cls_head.fc_cls.bias"}


def tiny_official(preset="tiny_k400_8x64", seed=0, **opts):
    """(model, official-layout state dict) of a perturbed tiny model (every tensor non-trivial)."""
    torch.manual_seed(seed)
    model = perturb_(u.create_model(preset, **opts), seed=seed).eval()
    return model, u.export_official_state_dict(model)


def saved_noisy_model(path, preset="tiny_k400_8x64", *, seed: int, scale: float = 0.05, **opts):
    """A model with random weights plus ``scale`` Gaussian noise on every tensor, saved with save_pretrained;
    returns the model directory."""
    torch.manual_seed(seed)
    model = u.create_model(preset, **opts)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn(t.shape) * scale)
    return model.save_pretrained(path)


def hand_mmaction2(official_sd: dict, labels: list[str], mm_labels: str = "kinetics400", meta=None) -> dict:
    """MMAction2's checkpoint of an official-layout state dict whose head rows are named ``labels``."""
    target = load_labels(mm_labels)
    assert sorted(target) == sorted(labels), "the test lists must hold the same class names"
    rows = torch.tensor([labels.index(c) for c in target])
    sd = {}
    for k, v in official_sd.items():
        k = MM_RENAMES.get(k, k)
        sd[k] = v[rows].clone() if k.startswith("cls_head.") else v.clone()
    sd = dict(sorted(sd.items(), key=lambda kv: kv[0].startswith("cls_head.")))
    return {"meta": {"mmengine_version": "0.7.0", "epoch": 5, "seed": 1234, "dataset_meta": {}} if meta is None
            else meta, "state_dict": sd}


def tiny_clip_visual(seed=0) -> dict:
    """A CLIP image tower with the shapes of ``uniformerv2_tiny`` (width 64, 4 layers, patch 8, 64 px)."""
    return _clip_visual(width=64, layers=4, patch=8, grid=8, seed=seed)


def write_openai_clip(path, visual: dict):
    """OpenAI's format: a TorchScript archive with ``visual.*`` and the text tower beside it."""
    sd = {f"visual.{k}": v for k, v in visual.items()}
    sd.update({"positional_embedding": torch.zeros(77, 16), "text_projection": torch.zeros(16, 32),
               "logit_scale": torch.ones([])})
    torch.jit.script(_Tree(sd)).save(str(path))
    return path
