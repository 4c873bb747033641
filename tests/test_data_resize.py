"""Frames resized as they are decoded: the same values as the test transform's float resize, up to the uint8
rounding, and bounded memory for huge sources (peak RSS of a real ``uniformerv2 predict`` process)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from uniformerv2.data.decode import read_clip, read_frames
from uniformerv2.data.transforms import resize_short_side as torch_resize_short_side, short_side_size
from uniformerv2.data.video import resize_short_side, short_side_size as leaf_short_side_size
from uniformerv2.inference.views import ViewMaker
from videogen import read_code, write_frame_folder, write_video

SIZES = [(48, 64, 32), (64, 48, 32), (45, 67, 40), (240, 320, 64), (720, 1280, 224), (100, 100, 224),
         (31, 97, 50), (1080, 1920, 336), (360, 202, 224)]


@pytest.mark.parametrize("h,w,short", SIZES)
def test_uint8_resize_is_the_float_resize_rounded(h, w, short):
    rng = np.random.default_rng(h * w + short)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    frame[: h // 2] = np.linspace(0, 255, w, dtype=np.float32)[None, :, None].astype(np.uint8)   # smooth part too
    ours = resize_short_side(frame, short)
    ref = torch_resize_short_side(torch.from_numpy(frame).permute(2, 0, 1)[None], short)[0].permute(1, 2, 0).numpy()
    assert ours.dtype == np.uint8 and ours.shape == ref.shape
    assert ours.shape[:2] == leaf_short_side_size(h, w, short) == short_side_size(h, w, short)
    diff = np.abs(ours.astype(np.float32) - ref)
    assert diff.max() <= 0.5 + 1e-3                       # never more than the rounding
    ties = np.abs(ref - np.floor(ref) - 0.5) < 1e-3         # x.5 within float error: either rounding is right
    assert np.array_equal(ours[~ties], np.clip(np.rint(ref), 0, 255)[~ties])


def test_views_of_resized_frames_match_todays_pipeline(tmp_path):
    """The model's input from frames resized while decoding equals the input from full-size frames through the
    test transform, within the uint8 rounding (0.5 / 255 / std in normalised units)."""
    path = write_video(tmp_path / "v.mp4", 30, width=320, height=240, gop=10, bframes=2)
    from uniformerv2.data.config import DataConfig

    data = DataConfig(crop_size=64, short_side=72, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))
    picks = [0, 7, 13, 29, 3, 3, 20, 11]
    full = read_frames(path, picks)
    small = read_frames(path, picks, short_side=72)
    assert full.shape == (8, 240, 320, 3) and small.shape == (8, 72, 96, 3)
    assert [read_code(f) for f in small] == picks
    for crops in (1, 3):
        make = ViewMaker(data, crops)
        a, b = make(full), make(small)
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 0.5 / 255 / 0.225 + 1e-4


def test_predict_from_a_file_matches_predict_from_full_size_frames(tmp_path):
    """``predict(path)`` decodes straight to the model's short side; ``predict(array)`` of the same full-size
    frames runs the float transform as before: the same views and labels, probabilities within rounding."""
    import uniformerv2
    from uniformerv2.inference import VideoClassifier

    torch.manual_seed(0)
    clf = VideoClassifier(uniformerv2.create_model("tiny_k400_8x64", num_classes=5), device="cpu")
    path = write_video(tmp_path / "v.mkv", 40, width=200, height=120, gop=8, bframes=2)
    frames = read_frames(path, range(40))
    from_file, from_array = clf.predict(path, views="2x3"), clf.predict(frames, views="2x3")
    assert [v["frames"] for v in from_file.views] == [v["frames"] for v in from_array.views]
    np.testing.assert_allclose(from_file.view_probs, from_array.view_probs, atol=1e-4)
    assert [c.index for c in from_file.top_k] == [c.index for c in from_array.top_k]


def test_short_side_for_frame_folders_and_info_keeps_the_stored_size(tmp_path):
    d = write_frame_folder(tmp_path / "f", 6, width=80, height=60)
    frames, idx, info = read_clip(d, lambda n: [5, 0], short_side=30)
    assert frames.shape == (2, 30, 40, 3) and (info.width, info.height) == (80, 60)
    assert [read_code(f) for f in frames] == [5, 0]


def test_predict_on_a_4096_square_video_stays_under_1_gb(tmp_path):
    import uniformerv2

    video = write_video(tmp_path / "big.mkv", 4, width=4096, height=4096, gop=4,
                        options={"preset": "ultrafast", "tune": "zerolatency"})
    import av
    with av.open(str(video)) as c:
        full = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert all(np.array_equal(a, full[i]) for a, i in zip(read_frames(video, [3, 0]), [3, 0]))
    small = read_frames(video, [2, 2, 0], short_side=64)
    assert small.shape == (3, 64, 64, 3)
    assert all(np.array_equal(a, resize_short_side(full[i], 64)) for a, i in zip(small, [2, 2, 0]))
    del full
    model = tmp_path / "model"
    uniformerv2.create_model("tiny_k400_8x64", num_classes=5).save_pretrained(model)
    # A wrapper process runs predict and reports the peak RSS of its only child.
    wrapper = ("import json, resource, subprocess, sys\n"
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "print(json.dumps({'rc': r.returncode, 'out': r.stdout, 'err': r.stderr[-2000:],\n"
               "                  'peak_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "uniformerv2", "predict", str(video),
           "--model", str(model), "--json", "--quiet"]
    res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout)
    assert res["rc"] == 0, res["err"]
    assert json.loads(res["out"])[0]["ok"]
    peak_mib = res["peak_kib"] / 1024
    print(f"peak RSS of predict on 4096x4096: {peak_mib:.0f} MiB")
    assert peak_mib < 1024
