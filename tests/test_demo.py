"""The embedded default, reduced: UniFormerV2 learns what a frame-only ViT cannot (real videos, real engine)."""
import json

from uniformerv2 import demo

REDUCED_EPOCHS = 20  # one reversal pair, 140 training videos: about 2 minutes on 2 cores for both models


def test_reduced_demo_uniformerv2_beats_the_frame_only_ablation(tmp_path):
    report = demo.run(tmp_path / "demo", classes=["moving left", "moving right"], videos_per_class=100,
                      epochs=REDUCED_EPOCHS, seed=0, progress=False, predict=False)
    on_disk = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert on_disk["uniformerv2_top1"] == report["uniformerv2_top1"] and on_disk["chance"] == 0.5
    assert report["test_videos"] == 30
    # both classes have the same frames: the frame-only model cannot beat chance by much ...
    assert report["frame_only_top1"] <= 0.7
    # ... while UniFormerV2 separates them by their order
    assert report["uniformerv2_top1"] >= 0.85
    assert report["uniformerv2_top1"] - report["frame_only_top1"] >= 0.25
    assert (tmp_path / "demo" / "uniformerv2" / "final" / "model.safetensors").is_file()
