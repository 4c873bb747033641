import json
import os
import threading
import time

import av
import pytest

from uniformerv2.cli import main
from videogen import trim_edit_list, write_frame_folder, write_video


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
    assert json.loads((tmp_path / "r.json").read_text())["layout"] == "class folders (2 classes)"
    lines = (tmp_path / "clean.csv").read_text().splitlines()
    assert [ln.rsplit("/", 2)[1:] for ln in lines] == [["run", "x.mp4,0"], ["walk", "x.mp4,1"]]


def test_scan_bad_input_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "list.txt").write_text("a.mp4 0\nb.mp4\n")
    assert main(["scan", str(tmp_path / "list.txt"), "--report", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "list.txt:2" in err
    assert main(["scan", str(tmp_path / "nope"), "--report", str(tmp_path / "r.json")]) == 2


def _scan(tmp_path, source, *extra):
    rc = main(["scan", str(source), "--report", str(tmp_path / "r.json"), "--workers", "2", *extra])
    report = json.loads((tmp_path / "r.json").read_text())
    return rc, report, {r["path"].rsplit("/", 1)[1]: r for r in report["files"]}


def test_scan_sees_every_video_at_any_depth_whatever_the_layout(tmp_path, capsys):
    d = tmp_path / "dir"
    (d / "thumbs").mkdir(parents=True)
    (d / "deep" / "er").mkdir(parents=True)
    write_video(d / "good.mp4", 10)
    (d / "bad1.mp4").write_bytes(b"\0" * 5000)
    (d / "bad2.mkv").write_bytes(b"not a video")
    write_video(d / "thumbs" / "one.mp4", 6)
    write_video(d / "deep" / "er" / "clip.ts", 8)            # .ts counts as a video for every command
    (d / "notes.txt").write_text("not a video")
    rc, report, rows = _scan(tmp_path, d)
    assert rc == 1 and (report["total"], report["ok"], report["failed"]) == (5, 3, 2)
    assert report["layout"].startswith("mixed: 3 video(s) at the top level and 2 in sub-folders")
    assert rows["clip.ts"]["ok"] and rows["clip.ts"]["frames"] == 8 and rows["one.mp4"]["frames"] == 6
    assert not rows["bad1.mp4"]["ok"] and not rows["bad2.mkv"]["ok"]
    out = capsys.readouterr().out
    assert "3/5 videos readable (mixed" in out and "Traceback" not in out

    flat = tmp_path / "flat"
    flat.mkdir()
    write_video(flat / "a.mp4", 5)
    assert _scan(tmp_path, flat)[1]["layout"] == "flat folder"


def test_scan_special_files_each_get_their_own_error_and_are_not_opened(tmp_path, capsys):
    d = tmp_path / "dir"
    (d / "cls").mkdir(parents=True)
    write_video(d / "cls" / "good.mp4", 5)
    os.mkfifo(d / "cls" / "pipe.mp4")
    (d / "cls" / "loop.mp4").symlink_to("loop.mp4")
    (d / "cls" / "gone.mp4").symlink_to(d / "missing.mp4")
    (d / "cls" / "null.mkv").symlink_to("/dev/null")
    (d / "cls" / "up").symlink_to(d)                          # a folder link back to the root
    t0 = time.monotonic()
    rc, report, rows = _scan(tmp_path, d, "--timeout", "20")
    assert time.monotonic() - t0 < 15                        # the FIFO was not opened (it would block 20 s)
    assert rc == 1 and report["layout"] == "class folders (1 classes)"
    assert rows["good.mp4"]["ok"]
    assert "FIFO" in rows["pipe.mp4"]["error"]
    assert "symbolic link loop" in rows["loop.mp4"]["error"]
    assert "broken symbolic link" in rows["gone.mp4"]["error"]
    assert "character device" in rows["null.mkv"]["error"]
    assert "symbolic link loop" in rows["up"]["error"]
    assert report["total"] == 6 and report["failed"] == 5
    out = capsys.readouterr().out
    assert out.count("\n") == 6 and "Traceback" not in out   # the summary, then one line per bad file
    assert not [t for t in threading.enumerate() if t.name == "uniformerv2-decode"]


def test_scan_truncation_and_valid_trimmed_files(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    full = write_video(tmp_path / "full.mkv", 48, width=96, height=64, gop=10)
    data = full.read_bytes()
    (d / "cut.mkv").write_bytes(data[:len(data) // 2])       # Matroska declares no frame count, only a duration
    webm = write_video(tmp_path / "full.webm", 48, codec="libvpx-vp9", gop=10)
    (d / "cut.webm").write_bytes(webm.read_bytes()[:webm.stat().st_size // 2])
    ts = write_video(tmp_path / "full.ts", 48, width=160, height=120, gop=10)
    with av.open(str(ts)) as c:                               # cut inside a keyframe: its frame is damaged
        pos = [p.pos for p in c.demux(video=0) if p.is_keyframe][2]
    (d / "cut.ts").write_bytes(ts.read_bytes()[:pos + 3 * 188])
    trim_edit_list(write_video(d / "trimmed.mp4", 48, gop=12, bframes=2), 5)   # valid: 43 frames
    write_video(d / "midgop.mkv", 48, gop=12, bframes=2, drop_packets=5)       # valid: 36 frames
    rc, report, rows = _scan(tmp_path, d)
    assert rc == 1 and report["failed"] == 3
    assert "truncated: container declares 1.60 s of video" in rows["cut.mkv"]["error"]
    assert "truncated" in rows["cut.webm"]["error"]
    assert "damaged" in rows["cut.ts"]["error"]
    assert rows["trimmed.mp4"]["ok"] and rows["trimmed.mp4"]["frames"] == 43
    assert rows["midgop.mkv"]["ok"] and rows["midgop.mkv"]["frames"] == 36
