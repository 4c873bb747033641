"""The model-side CLI as a user runs it: real subprocesses, real files."""
import subprocess
import sys

import torch

import uniformerv2 as u
from test_model import perturb_


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "uniformerv2", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_models_lists_archs_and_presets():
    r = cli("models")
    assert r.returncode == 0
    assert "uniformerv2_b16" in r.stdout and "ssv2_b16_16x224" in r.stdout and "k400_frozen_l14_8x336" in r.stdout


def test_info_and_convert_round_trip(tmp_path):
    model = perturb_(u.create_model("tiny_ssv2_8x64")).eval()
    sd = u.export_official_state_dict(model)
    torch.save(sd, tmp_path / "ssv2.pyth")
    r = cli("info", tmp_path / "ssv2.pyth")
    assert r.returncode == 0, r.stderr
    assert "official UniFormerV2 checkpoint" in r.stdout and "local MHRA double" in r.stdout
    assert "classes: 174" in r.stdout

    r = cli("convert", tmp_path / "ssv2.pyth", tmp_path / "dir", "--preset", "tiny_ssv2_8x64")
    assert r.returncode == 0, r.stderr
    r = cli("info", tmp_path / "dir")
    assert "uniformerv2 model directory" in r.stdout and "preset: tiny_ssv2_8x64" in r.stdout
    r = cli("convert", tmp_path / "dir", tmp_path / "back.pyth", "--to", "official")
    assert r.returncode == 0, r.stderr
    back = torch.load(tmp_path / "back.pyth", weights_only=True)
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    video = torch.randn(1, 3, 8, 64, 64)
    torch.testing.assert_close(u.from_pretrained(tmp_path / "dir").eval()(video), model(video))


def test_bad_input_is_one_line_exit_2(tmp_path):
    (tmp_path / "junk.pyth").write_bytes(b"not a checkpoint at all")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("precious")
    cases = [("info", tmp_path / "missing.pyth"), ("info", tmp_path / "junk.pyth"),
             ("convert", tmp_path / "junk.pyth", tmp_path / "x"), ("models", "--bogus"),
             ("convert", tmp_path / "junk.pyth", tmp_path / "out")]
    for args in cases:
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("uniformerv2: error:")
    assert (tmp_path / "out" / "keep.txt").read_text() == "precious"


def test_unreadable_weights_are_one_line_through_the_cli(tmp_path, capsys):
    """A few kinds as a user meets them (test_weights.py feeds every kind through the API); the CLI's own
    entry point in this process (one real subprocess above shows the same path end to end)."""
    from test_weights import unreadable_weights
    from uniformerv2.cli import main

    files = unreadable_weights(tmp_path)
    video = files["clip.mp4"][0]
    cases = [(("predict", video, "--model", files["hello.pyth"][0], "--preset", "tiny_k400_8x64"), "hello.pyth"),
             (("info", files["url.pyth"][0]), "url.pyth"),
             (("predict", video, "--model", video), "clip.mp4")]
    for args, name in cases:
        rc = main([str(a) for a in args])
        err = capsys.readouterr().err
        path, says = files[name]
        assert rc == 2, (args, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert err.strip() == f"uniformerv2: error: {path} {says}" or \
            err.startswith(f"uniformerv2: error: {path} {says}"), err
