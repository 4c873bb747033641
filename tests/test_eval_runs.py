"""`eval` over a list as real processes: torchrun (gloo, CPU) with 2 processes writes the same files as one,
kill -9 + --resume writes the same files as an uninterrupted run with every video in the manifest once, a
corrupt video is listed once, and the run ends with the figures line."""
import json
import signal
import subprocess
import sys

import pytest

from test_inference_runs import ENV, ROOT, _kill_when_started
from videogen import write_video
from weightfiles import saved_noisy_model

FILES = ("metrics.json", "predictions.json", "per_class.csv", "manifest.jsonl")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    saved_noisy_model(root / "model", "uniformerv2_nano", seed=5, scale=0.1, num_classes=3, num_frames=4)
    (root / "v").mkdir()
    lines = []
    for i in range(13):
        write_video(root / "v" / f"{i:02d}.mp4", num_frames=10 + i, width=40 + 4 * (i % 3), height=32, fps=8)
        lines.append(f"v/{i:02d}.mp4,{i % 3}\n")
    (root / "v" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 8)
    lines.insert(5, "v/corrupt.mp4,1\n")
    (root / "test.csv").write_text("".join(lines))
    (root / "cfg.yaml").write_text(f"""
model:
  preset: uniformerv2_nano
  options: {{num_classes: 3, num_frames: 4}}
data:
  root: {root}
  test: test.csv
train:
  progress: false
eval:
  batch_size: 3
  test_clips: 2
  test_crops: 3
""")
    return root


def eval_cmd(setup, out, *extra):
    return ["-m", "uniformerv2", "eval", "--config", str(setup / "cfg.yaml"), "--model", str(setup / "model"),
            "--output", str(out), *map(str, extra)]


def run(args, n=1, rc=0):
    launcher = [sys.executable] if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                "--nproc_per_node", str(n)]
    r = subprocess.run(launcher + args, capture_output=True, text=True, cwd=ROOT, timeout=400, env=ENV)
    assert r.returncode == rc, r.stdout + r.stderr
    return r


def files(out):
    return {name: (out / name).read_text() for name in FILES}


@pytest.mark.slow
def test_eval_two_processes_and_kill_resume_equal_one(setup, tmp_path):
    one = run(eval_cmd(setup, tmp_path / "one", "--workers", "1"), rc=1)  # exit 1: a video could not be read
    ref = files(tmp_path / "one")
    m = [json.loads(x) for x in ref["manifest.jsonl"].splitlines()]
    assert [x["index"] for x in m] == list(range(14)) and [x["status"] for x in m].count("failed") == 1
    assert m[5]["status"] == "failed" and "corrupt.mp4" in m[5]["error"]
    metrics = json.loads(ref["metrics.json"])
    assert metrics["count"] == 13 and metrics["skipped"] == [str(setup / "v" / "corrupt.mp4")]
    assert "14 videos (1 failed)" in one.stderr and "clips/s" in one.stderr and "top-1" in one.stdout

    two = run(eval_cmd(setup, tmp_path / "two", "--workers", "1"), n=2, rc=1)
    assert files(tmp_path / "two") == ref and "x 2 processes" in two.stderr

    out = tmp_path / "killed"
    rc = _kill_when_started([sys.executable, *eval_cmd(setup, out, "--workers", "1")], out / ".parts")
    assert rc == -signal.SIGKILL and not (out / "metrics.json").exists()
    r = subprocess.run([sys.executable, *eval_cmd(setup, out)], capture_output=True, text=True, cwd=ROOT,
                       env=ENV, timeout=300)
    assert r.returncode == 2 and "--resume" in r.stderr
    run(eval_cmd(setup, out, "--resume", "--workers", "2"), rc=1)
    got = files(out)
    assert got == ref
    assert all(json.loads(x)["attempts"] == 1 for x in got["manifest.jsonl"].splitlines())


def test_eval_list_and_root_options(setup, tmp_path):
    (tmp_path / "few.csv").write_text("v/00.mp4,0\nv/01.mp4,1\n")
    r = run(["-m", "uniformerv2", "eval", "--config", str(setup / "cfg.yaml"), "--model", str(setup / "model"),
             "--list", str(tmp_path / "few.csv"), "--root", str(setup), "--workers", "0"])
    assert "(2 videos, 0 skipped" in r.stdout and "2 videos in" in r.stderr


def test_eval_maps_the_lists_labels_by_name_or_refuses(tmp_path, capsys):
    """A model whose classes are in sorted-folder order and a list whose indices follow another order (the
    labels file beside it): per_class.csv names the videos' true classes; without the labels file, one line
    and exit 2; --labels model takes the indices as they are."""
    import csv

    model_labels = ["growing", "moving left", "moving right", "shrinking"]
    list_order = ["moving left", "moving right", "growing", "shrinking"]
    saved_noisy_model(tmp_path / "model", "uniformerv2_nano", seed=2, num_frames=4, labels=model_labels)
    (tmp_path / "v").mkdir()
    lines = []
    for i in range(4):
        write_video(tmp_path / "v" / f"{i}.mp4", num_frames=12, width=40, height=32, fps=8)
        lines.append(f"v/{i}.mp4,{i}\n")
    (tmp_path / "test.csv").write_text("".join(lines))
    (tmp_path / "cfg.yaml").write_text(f"model: {{preset: uniformerv2_nano, options: {{num_frames: 4}}}}\n"
                                       f"data: {{root: {tmp_path}, test: test.csv}}\ntrain: {{progress: false}}\n")
    from uniformerv2.cli import main

    cmd = ["eval", "--config", str(tmp_path / "cfg.yaml"), "--model", str(tmp_path / "model"), "--workers", "0"]
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert "labels.txt" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    (tmp_path / "labels.txt").write_text("\n".join(list_order) + "\n")
    assert main([*cmd, "--output", str(tmp_path / "out")]) == 0
    assert "mapped to the model's classes by name" in capsys.readouterr().err
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [model_labels[p["label"]] for p in sorted(preds, key=lambda p: p["index"])] == list_order
    rows = list(csv.DictReader((tmp_path / "out" / "per_class.csv").open()))
    # video i is of class list_order[i]: one video per class, each counted under its own name
    assert {(r["name"], r["support"]) for r in rows} == {(c, "1") for c in model_labels}
    assert [r["name"] for r in rows] == model_labels and [int(r["class"]) for r in rows] == [0, 1, 2, 3]

    assert main([*cmd, "--labels", "model"]) == 0
    assert "model's order" in capsys.readouterr().err
