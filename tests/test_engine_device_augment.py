"""The engine with ``data.augment_on: device``: exact resume after SIGKILL and results independent of the number
of DataLoader workers (real videos through the CLI), config checks, mixup in the loop."""
import os
import subprocess

import pytest
import torch

from test_engine_support import ToyClips, toy_config
from test_engine_train import KILLER, PY, ROOT, cli, records, same_weights, videos  # noqa: F401 (fixture)
from uniformerv2.engine import train
from uniformerv2.errors import UserError

DEVICE = ["data.augment_on=device", "data.pipeline.rand_augment=rand-m9-n2-mstd0.5-inc1",
          "data.pipeline.repeated_aug=2", "train.checkpoint_every=2", "model.options.drop_path_rate=0.1"]


def test_device_augmentation_resumes_bit_identically_for_any_number_of_workers(videos, tmp_path):  # noqa: F811
    """RandAugment, crop, flip and two repeats on the device: a run with no worker process and a run with two
    workers killed inside step 9 and resumed end with the same weights and the same logged losses."""
    cli("train", "--config", videos / "cfg.yaml", "--output", tmp_path / "full", "data.num_workers=0", *DEVICE)
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    p = subprocess.run([PY, str(killer), "train", "--config", str(videos / "cfg.yaml"), "--output",
                        str(tmp_path / "cut"), "data.num_workers=2", *DEVICE], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "KILL_AT_CALL": "9"}, timeout=300)
    assert p.returncode == -9, p.stderr
    r = cli("train", "--output", tmp_path / "cut", "--resume", "data.num_workers=2", *DEVICE)
    assert "at step 8 (epoch 1, batch 2/6)" in r.stdout
    assert same_weights(tmp_path / "full" / "final", tmp_path / "cut" / "final")
    full, cut = records(tmp_path / "full", "loss"), records(tmp_path / "cut", "loss")
    assert [x["loss"] for x in full] == [x["loss"] for x in cut] and len(full) == 12
    # the augmentation ran: it differs from the CPU path's draws (another stream), same data otherwise
    cli("train", "--config", videos / "cfg.yaml", "--output", tmp_path / "cpu", "data.num_workers=0",
        *DEVICE[1:])
    assert [x["loss"] for x in records(tmp_path / "cpu", "loss")] != [x["loss"] for x in full]


@pytest.fixture(scope="module")
def square_videos(tmp_path_factory):
    """16 square clips: with crop_scale [1, 1] the Inception crop of a square frame is the whole frame, so the
    training transform has no random part left (on 40x32 clips it could still move by a pixel)."""
    from videogen import write_video

    root = tmp_path_factory.mktemp("square")
    (root / "v").mkdir()
    for i in range(16):
        write_video(root / "v" / f"{i:02d}.mp4", num_frames=8 + i % 5, width=32, height=32, fps=8)
    (root / "train.csv").write_text("".join(f"v/{i:02d}.mp4,{i % 2}\n" for i in range(16)))
    (root / "cfg.yaml").write_text(CFG.format(root=root))
    return root


CFG = """
seed: 3
model:
  preset: uniformerv2_nano
  options: {{num_classes: 2, num_frames: 4, head_dropout: 0.0, global_mlp_dropout: 0.0}}
data:
  root: {root}
  train: train.csv
  num_workers: 0
  pipeline: {{rand_augment: null, flip: false, crop_scale: [1.0, 1.0]}}
train:
  epochs: 2
  batch_size: 4
  lr: 1.0e-3
  warmup_epochs: 0.5
  log_every: 1
  eval_every: 0
  progress: false
"""


def test_without_random_ops_the_device_path_trains_exactly_as_the_cpu_path(square_videos, tmp_path):
    """No flip, no RandAugment, a crop that cannot move: both paths must hand the model the same pixels in the
    same order (frame sampling, resize, crop, normalisation, labels), so the logged losses and the final
    weights are bit-identical. A gap between the two paths on such a recipe is a bug of the device path, not
    augmentation randomness (the two paths draw their random choices from different streams)."""
    cli("train", "--config", square_videos / "cfg.yaml", "--output", tmp_path / "cpu")
    cli("train", "--config", square_videos / "cfg.yaml", "--output", tmp_path / "dev", "data.augment_on=device")
    cpu, dev = records(tmp_path / "cpu", "loss"), records(tmp_path / "dev", "loss")
    assert len(cpu) == 8 and [x["loss"] for x in cpu] == [x["loss"] for x in dev]
    assert same_weights(tmp_path / "cpu" / "final", tmp_path / "dev" / "final")


def test_config_switches_are_checked(videos, tmp_path):  # noqa: F811
    bad = cli("train", "--config", videos / "cfg.yaml", "--output", tmp_path / "r", "data.augment_on=gpu",
              check=False)
    assert bad.returncode == 2 and "data.augment_on must be cpu or device" in bad.stderr
    bad = cli("train", "--config", videos / "cfg.yaml", "--output", tmp_path / "r", "data.mixup={alpha: 1}",
              check=False)
    assert bad.returncode == 2 and "unknown data.mixup key(s): alpha" in bad.stderr


def test_device_augmentation_needs_decoded_clips(tmp_path):
    cfg = toy_config(epochs=1)
    cfg["data"]["augment_on"] = "device"
    with pytest.raises(UserError, match="decoded clips"):
        train(cfg, tmp_path / "run", datasets={"train": ToyClips(16)})


def test_mixup_in_the_loop_trains_on_soft_targets(tmp_path):
    cfg = toy_config(epochs=3)
    cfg["data"]["mixup"] = {"mixup_alpha": 0.4, "cutmix_alpha": 0.0, "label_smoothing": 0.1}
    s = train(cfg, tmp_path / "run", datasets={"train": ToyClips(64), "val": ToyClips(16, seed=1)})
    steps = records(tmp_path / "run", "loss")
    assert s["steps"] == 24 and all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    assert sum(r["loss"] for r in steps[-4:]) < sum(r["loss"] for r in steps[:4])
    assert s["best_val_top1"] >= 75.0
