"""`predict` / `features` over datasets as real processes: torchrun (gloo, CPU) with 1 and 2 processes gives the
same merged outputs, kill -9 + --resume gives the same outputs as an uninterrupted run with every input in the
manifest once, a corrupt file is reported once and moves nothing else, input lists and resume rules."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uniformerv2.cli import main
from uniformerv2.fileio import read_jsonl
from uniformerv2.inference.inputs import collect_videos, output_names, read_path_list
from videogen import write_video
from weightfiles import saved_noisy_model

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}   # the same threads per process in every run (see pipeline)


def cli(*args, check=True, timeout=300):
    r = subprocess.run([sys.executable, "-m", "uniformerv2", *map(str, args)], capture_output=True, text=True,
                       cwd=ROOT, timeout=timeout, env=ENV)
    if check:
        assert r.returncode in (0, 1), r.stderr
    return r


def torchrun(n, *args):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                        "-m", "uniformerv2", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                       timeout=400, env=ENV)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model with random weights, saved with save_pretrained (config + safetensors)."""
    return saved_noisy_model(tmp_path_factory.mktemp("model") / "tiny", seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Nine small videos in nested folders (different lengths and sizes), a corrupt one, and a list file with
    relative paths."""
    root = tmp_path_factory.mktemp("data")
    rels = []
    for i in range(9):
        rel = Path(f"set{i % 2}") / f"clip{i}.mp4"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / rel, 16 + 5 * i, width=64 + 8 * (i % 3), height=48, fps=10)
        rels.append(rel.as_posix())
    (root / "set1" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    rels.insert(4, "set1/broken.mp4")
    (root / "list.txt").write_text("# videos\n" + "\n".join(f"{r} 3" for r in rels) + "\n")
    return root


def manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def feature_bytes(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.safetensors"))}


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(model_dir, data, tmp_path):
    common = ["--model", model_dir, "--root", data, "--views", "1x3", "--quiet"]
    one = cli("features", data / "list.txt", *common, "--out", tmp_path / "f1", "--workers", "1")
    two = torchrun(2, "features", data / "list.txt", *common, "--out", tmp_path / "f2", "--workers", "1")
    assert one.returncode == two.returncode == 1                     # the corrupt file
    f1, f2 = feature_bytes(tmp_path / "f1"), feature_bytes(tmp_path / "f2")
    assert sorted(f1) == sorted(f"set{i % 2}/clip{i}.safetensors" for i in range(9))
    assert f1 == f2                                                  # bit-equal, file by file
    m1, m2 = manifest(tmp_path / "f1"), manifest(tmp_path / "f2")
    assert m1 == m2 and [m["index"] for m in m1] == list(range(10))
    assert [m["status"] for m in m1].count("failed") == 1 and m1[4]["status"] == "failed"
    assert "broken.mp4" in m1[4]["error"] and all(m["attempts"] == 1 for m in m1)
    # reported once, on the process that met it; the summary line gives the figures over both processes
    assert (one.stderr + two.stderr).count("broken.mp4: ERROR") == 2
    assert "10 videos (1 failed)" in one.stderr.splitlines()[-1] and "x 2 processes" in two.stderr
    assert "videos/s" in two.stderr and "clips/s" in two.stderr and "waited for data" in two.stderr

    window = ["--window", "1.5", "--stride", "1", "--top-k", "3"]
    p1 = cli("predict", data / "list.txt", *common, *window, "--out", tmp_path / "p1", "--workers", "2")
    p2 = torchrun(2, "predict", data / "list.txt", *common, *window, "--out", tmp_path / "p2", "--workers", "0")
    j1 = json.loads((tmp_path / "p1" / "predictions.json").read_text())
    assert j1 == json.loads((tmp_path / "p2" / "predictions.json").read_text())
    assert [r["path"] for r in j1] == [str(data / r) for r in read_path_list(data / "list.txt")]
    assert [r["ok"] for r in j1].count(False) == 1 and len(j1[0]["timeline"]) >= 1
    assert (tmp_path / "p1" / "predictions.csv").read_text() == (tmp_path / "p2" / "predictions.csv").read_text()
    assert p1.returncode == p2.returncode == 1


def test_corrupt_file_moves_nothing_else(model_dir, data, tmp_path, capsys):
    """The same list without the corrupt file: every other output is the same, bit for bit."""
    good = [r for r in read_path_list(data / "list.txt") if "broken" not in r]
    (tmp_path / "good.csv").write_text("path,label\n" + "".join(f"{r},0\n" for r in good))
    common = ["--model", str(model_dir), "--root", str(data), "--views", "1x3", "--quiet", "--workers", "2"]
    assert main(["features", str(data / "list.txt"), *common, "--out", str(tmp_path / "all")]) == 1
    assert capsys.readouterr().err.count("broken.mp4: ERROR") == 1
    assert main(["features", str(tmp_path / "good.csv"), *common, "--out", str(tmp_path / "good")]) == 0
    assert feature_bytes(tmp_path / "all") == feature_bytes(tmp_path / "good")


def _kill_when_started(cmd, records: Path, timeout=240):
    """Start ``cmd``, SIGKILL its whole process group once it has recorded an input but before it ends."""
    p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    end = time.monotonic() + timeout
    while time.monotonic() < end and p.poll() is None:
        if any(read_jsonl(f) for f in records.glob("s*-r*.jsonl")):
            os.killpg(p.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    p.wait()
    return p.returncode


@pytest.mark.slow
@pytest.mark.parametrize("task", ["features", "predict"])
def test_kill_and_resume_equals_uninterrupted(model_dir, data, tmp_path, task):
    common = [task, data / "list.txt", "--model", model_dir, "--root", data, "--views", "1x3", "--quiet",
              "--workers", "1"]
    cli(*common, "--out", tmp_path / "ref")
    out = tmp_path / "killed"
    rc = _kill_when_started([sys.executable, "-m", "uniformerv2", *map(str, common), "--out", str(out)],
                            out / ".parts")
    assert rc == -signal.SIGKILL and not (out / "manifest.jsonl").exists()   # killed mid-run
    done_before = {r["index"] for r in read_jsonl(next((out / ".parts").glob("s0001-r000.jsonl")))}
    assert 0 < len(done_before) < 10
    assert cli(*common, "--out", out, check=False).returncode == 2            # a run is there: say what to do
    r = cli(*common, "--out", out, "--resume")
    assert f"resumed: {len(done_before)} inputs" in r.stderr
    m = manifest(out)
    assert [x["index"] for x in m] == list(range(10)) and all(x["attempts"] == 1 for x in m)
    assert m == manifest(tmp_path / "ref")
    if task == "features":
        assert feature_bytes(out) == feature_bytes(tmp_path / "ref")
    else:
        for name in ("predictions.json", "predictions.csv"):
            assert (out / name).read_text() == (tmp_path / "ref" / name).read_text()
        rows = (out / "predictions.csv").read_text().splitlines()
        assert len(rows) == len(set(rows)) == 1 + 9 * 5 + 1               # header, top-5 of 9 videos, 1 failure


def test_resume_rules_and_retrying_failures(model_dir, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    a = write_video(src / "a.mp4", 20, fps=10)
    (src / "b.mp4").write_text("not yet a video")
    out = tmp_path / "out"
    base = ["predict", str(src), "--model", str(model_dir), "--quiet", "--workers", "0", "--out", str(out)]
    assert main(base) == 1
    assert main(base) == 2 and "--resume continues it" in capsys.readouterr().err
    assert main(base + ["--resume", "--views", "2x1"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "views" in err
    write_video(src / "b.mp4", 25, fps=10)
    assert main(base + ["--resume"]) == 1                           # failures are kept unless asked
    assert main(base + ["--resume", "--retry-failed"]) == 0
    m = manifest(out)
    assert [(x["status"], x["attempts"]) for x in m] == [("done", 1), ("done", 2)]
    assert m[0]["path"] == str(a)
    assert json.loads((out / "predictions.json").read_text())[1]["ok"] is True
    assert main(base + ["--retry-failed"]) == 2 and main(base[:-2] + ["--resume"]) == 2


def test_resume_takes_the_recorded_options(model_dir, tmp_path, capsys):
    """A run started with --top-k 2 --views 2x1 --window 1: --resume alone continues it with those options
    (the same outputs as an uninterrupted run); only an option typed with another value is refused."""
    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "a.mp4", 20, fps=10)
    (src / "b.mp4").write_text("not yet a video")
    opts = ["--top-k", "2", "--views", "2x1", "--window", "1"]
    base = ["predict", str(src), "--model", str(model_dir), "--quiet", "--workers", "0"]
    assert main(base + opts + ["--out", str(tmp_path / "out")]) == 1
    write_video(src / "b.mp4", 25, fps=10)
    ref = tmp_path / "ref"
    assert main(base + opts + ["--out", str(ref)]) == 0
    out = ["--out", str(tmp_path / "out")]
    capsys.readouterr()
    assert main(base + out + ["--resume", "--retry-failed"]) == 0
    got = json.loads((tmp_path / "out" / "predictions.json").read_text())
    want = json.loads((ref / "predictions.json").read_text())

    def shape(results):   # the numbers differ in the last bits only: two threads here (see pipeline)
        return [[(w.get("start"), [(s["index"], round(s["prob"], 5)) for s in w["top_k"]])
                 for w in [r, *r.get("timeline", [])]] for r in results]
    assert shape(got) == shape(want)
    assert [len(r["top_k"]) for r in got] == [2, 2] and all(len(w["top_k"]) == 2 for w in got[0]["timeline"])
    assert main(base + out + ["--resume", "--top-k", "2"]) == 0            # the same value typed again: fine
    assert main(base + out + ["--resume", "--top-k", "3"]) == 2
    err = capsys.readouterr().err
    assert "top_k: 2 then, 3 now" in err and "views" not in err


def test_input_lists(tmp_path):
    root = tmp_path / "data"
    for rel in ("x/a.mp4", "x/y/b.mkv", "c.mp4", "x/.hidden.mp4", "x/notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    (tmp_path / "list.csv").write_text("label,video_path\n0,c.mp4\n1,x/a.mp4\n")
    (tmp_path / "list.txt").write_text("x/y/b.mkv 12 3\nmy clip.mp4\nc.mp4,4\n\n# comment\n")
    assert read_path_list(tmp_path / "list.txt") == ["x/y/b.mkv", "my clip.mp4", "c.mp4"]
    got = collect_videos([root / "x"])
    assert [(str(f), str(r)) for f, r in got] == [(str(root / "x/a.mp4"), "a.mp4"), (str(root / "x/y/b.mkv"), "y/b.mkv")]
    got = collect_videos([tmp_path / "list.csv", "x", "x/**/*.mkv", "missing.mp4"], root=root)
    assert [str(f) for f, _ in got] == [str(root / p) for p in ("c.mp4", "x/a.mp4", "x/y/b.mkv", "missing.mp4")]
    assert [str(r) for _, r in got] == ["c.mp4", "x/a.mp4", "y/b.mkv", "missing.mp4"]
    assert [str(f) for f, _ in collect_videos([str(root / "*.mp4")])] == [str(root / "c.mp4")]
    same = [(Path("a/v.mp4"), Path("v.mp4")), (Path("b/v.mp4"), Path("v.mp4")), (Path("v.mkv"), Path("v.mkv"))]
    assert [str(n) for n in output_names(same)] == ["v.mp4", "v.mp4-1", "v.mkv"]
    # test.mp4 and test.avi in one folder: the extension tells the outputs apart; a lone stem stays a stem
    pair = [(Path(n), Path(n)) for n in ("d/test.mp4", "d/test.avi", "d/other.mp4")]
    assert [str(n) for n in output_names(pair)] == ["d/test.mp4", "d/test.avi", "d/other"]
