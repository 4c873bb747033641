import json

import pytest

from uniformerv2.cli import main
from videogen import write_frame_folder, write_video


def test_scan_list_report_and_clean_list(tmp_path, capsys):
    write_video(tmp_path / "good.mp4", 30, width=64, height=48, fps=25)
    write_video(tmp_path / "good2.avi", 12, codec="mpeg4")
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 100)
    write_frame_folder(tmp_path / "frames1", 6)
    (tmp_path / "list.csv").write_text("good.mp4,0\nbad.mp4,1\ngood2.avi,1\nmissing.mp4,0\n")
    rc = main(["scan", str(tmp_path / "list.csv"), "--root", str(tmp_path), "--report", str(tmp_path / "r.json"),
               "--write-clean", str(tmp_path / "clean.csv"), "--workers", "2"])
    assert rc == 1
    report = json.loads((tmp_path / "r.json").read_text())
    rows = {r["path"].rsplit("/", 1)[1]: r for r in report["files"]}
    assert (report["total"], report["ok"], report["failed"]) == (4, 2, 2)
    good = rows["good.mp4"]
    assert good["ok"] and good["error"] is None
    assert (good["frames"], good["fps"], good["width"], good["height"], good["duration"]) == (30, 25.0, 64, 48, 1.2)
    assert rows["good2.avi"]["frames"] == 12
    assert not rows["bad.mp4"]["ok"] and "bad.mp4" in rows["bad.mp4"]["error"] and rows["bad.mp4"]["frames"] is None
    assert "not found" in rows["missing.mp4"]["error"]
    assert (tmp_path / "clean.csv").read_text() == "good.mp4,0\ngood2.avi,1\n"
    assert "2/4 videos readable" in capsys.readouterr().out

    (tmp_path / "frames.txt").write_text(f"{tmp_path / 'frames1'} 6 0\n{tmp_path / 'frames1'} 9 0\n")
    assert main(["scan", str(tmp_path / "frames.txt"), "--report", str(tmp_path / "f.json"), "--workers", "1"]) == 1
    rows = json.loads((tmp_path / "f.json").read_text())["files"]
    assert [r["ok"] for r in rows] == [True, False]


def test_scan_class_folders_all_good(tmp_path):
    for cls in ("walk", "run"):
        (tmp_path / "videos" / cls).mkdir(parents=True)
        write_video(tmp_path / "videos" / cls / "x.mp4", 5)
    rc = main(["scan", str(tmp_path / "videos"), "--report", str(tmp_path / "r.json"),
               "--write-clean", str(tmp_path / "clean.csv"), "--workers", "1"])
    assert rc == 0
    lines = (tmp_path / "clean.csv").read_text().splitlines()
    assert [ln.rsplit("/", 2)[1:] for ln in lines] == [["run", "x.mp4,0"], ["walk", "x.mp4,1"]]


def test_scan_bad_input_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "list.txt").write_text("a.mp4 0\nb.mp4\n")
    assert main(["scan", str(tmp_path / "list.txt"), "--report", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "list.txt:2" in err
    assert main(["scan", str(tmp_path / "nope"), "--report", str(tmp_path / "r.json")]) == 2
