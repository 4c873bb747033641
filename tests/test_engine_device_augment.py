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
