"""One source per recipe: fine-tuning's choices come from the shipped configs, and pinned here so that a change
of a config shows up as a change of what `finetune` picks."""
import pytest

from uniformerv2.engine import finetune as F

# (start, kind, frozen, size) -> (LR, at global batch, epochs, warmup epochs): what `finetune` chooses.
CHOICES = {
    ("video", "scene", False, "base"): (2e-05, 512, 24, 5),
    ("video", "scene", False, "large"): (1e-05, 512, 18, 5),
    ("video", "scene", True, "base"): (5e-05, 512, 24, 5),
    ("video", "scene", True, "large"): (5e-05, 512, 18, 5),
    ("video", "motion", False, "base"): (2e-05, 512, 24, 5),
    ("video", "motion", False, "large"): (1e-05, 512, 18, 5),
    ("video", "motion", True, "base"): (5e-05, 512, 24, 5),
    ("video", "motion", True, "large"): (5e-05, 512, 18, 5),
    ("image", "scene", False, "base"): (1e-05, 256, 55, 5),
    ("image", "scene", False, "large"): (1e-05, 512, 40, 5),
    ("image", "scene", True, "base"): (0.0008, 512, 55, 5),
    ("image", "scene", True, "large"): (0.0008, 512, 40, 5),
    ("image", "motion", False, "base"): (4e-05, 128, 22, 5),
    ("image", "motion", False, "large"): (2e-05, 128, 22, 5),
    ("image", "motion", True, "base"): (0.0008, 512, 22, 5),
    ("image", "motion", True, "large"): (0.0008, 512, 22, 5),
}
EMBED = {"base": 768, "large": 1024}
ARCH = {"base": "uniformerv2_b16", "large": "uniformerv2_l14"}


@pytest.mark.parametrize("key", list(CHOICES), ids=lambda k: "-".join(map(str, k)))
def test_finetune_picks_the_pinned_schedule(key):
    start, kind, frozen, size = key
    source = F.Source("x", start, ARCH[size], None, None)
    sched, lr_run = F.recipe_run(source, kind, EMBED[size], frozen)
    assert (lr_run.lr, lr_run.batch, sched.epochs, sched.warmup) == CHOICES[key]


def test_finetune_picks_the_pinned_design_and_pipeline():
    """The kind's model design and data pipeline, for image-ViT weights (a video model keeps its own design)."""
    augment = "rand-m7-n4-mstd0.5-inc1"
    convention = dict(mean=[0.45] * 3, std=[0.225] * 3, bgr=False, sampling="sparse", crop_scale=[0.08, 1.0])
    image = F.Source("x", "image", "uniformerv2_b16", None, None)
    assert F.data_pipeline(image, "scene") == dict(flip=True, rand_augment=augment, repeated_aug=1, test_clips=4,
                                                   test_crops=3, **convention)
    assert F.data_pipeline(image, "motion") == dict(flip=False, rand_augment=augment, repeated_aug=2,
                                                    test_clips=1, test_crops=3, **convention)
    for size, layers in (("base", list(range(4, 12))), ("large", list(range(8, 24)))):
        source = F.Source("x", "image", ARCH[size], None, None)
        assert F.model_options(source, "scene", False, 5) == (ARCH[size], {"num_classes": 5})
        assert F.model_options(source, "scene", True, 5) == (ARCH[size], {"frozen_backbone": True, "num_classes": 5})
        motion = dict(temporal_downsample=True, num_frames=16, global_layers=layers, drop_path_rate=0.2,
                      global_drop_path_rate=0.4)
        assert F.model_options(source, "motion", False, 5) == (ARCH[size], {"local_mhra": "double", **motion,
                                                                             "num_classes": 5})
        assert F.model_options(source, "motion", True, 5) == (ARCH[size], {**motion, "frozen_backbone": True,
                                                                            "num_classes": 5})


def test_demo_and_ablate_share_the_synthetic_recipe(tmp_path, monkeypatch):
    """`make demo` and `uniformerv2 ablate` train the recipe of one function over the shipped demo_synth config;
    the demo keeps the paths it was given (its decoded clips are cached under them), a study makes them absolute."""
    from uniformerv2 import demo, synth
    from uniformerv2.engine import load_config
    from uniformerv2.engine.ablate import synthetic_recipe as ablate_recipe
    from uniformerv2.engine.recipes import synthetic_recipe

    assert ablate_recipe is synthetic_recipe
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "demo-output" / "data"
    info = synth.generate(data, classes=["moving left", "moving right", "growing"], videos_per_class=20, workers=1,
                          progress=False)
    assert info["splits"]["train"]["count"] == 42  # 14 per class: 5 steps of 8 per epoch, so 20 warmup epochs
    rel = "demo-output/data"
    got = load_config(synthetic_recipe(rel, epochs=7, seed=3, model=demo.MODELS["frame_only"], num_workers=0,
                                       progress=False, absolute=False))
    frame_only = {"head_dropout": 0.0, "global_mlp_dropout": 0.0, "local_mhra": "none", "global_layers": [],
                  "temporal_downsample": False}
    assert got == load_config("demo_synth", {
        "seed": 3,
        "model": {"preset": "uniformerv2_tiny", "options": {**frame_only, "num_classes": 3},
                  "labels": f"{rel}/labels.txt"},
        "data": {"root": rel, "num_workers": 0},
        "train": {"epochs": 7, "progress": False, "warmup_epochs": 20.0}})
    assert got["model"]["options"]["num_frames"] == 8 and got["train"]["lr"] == 1e-3  # from demo_synth.yaml
    got = load_config(synthetic_recipe(rel))
    assert got == load_config("demo_synth", {
        "seed": 0, "model": {"options": {"num_classes": 3}, "labels": str(data.resolve() / "labels.txt")},
        "data": {"root": str(data.resolve())}, "train": {"epochs": 12, "warmup_epochs": 20.0}})
    assert got["model"]["preset"] == "tiny_ssv2_8x64" and got["data"]["num_workers"] == 1
