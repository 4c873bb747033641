import os
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from uniformerv2.data import _pyav
from uniformerv2.data.decode import iter_frames, probe, read_clip, read_frames
from uniformerv2.data.sampling import sparse_indices
from uniformerv2.errors import UserError, VideoError
from videogen import read_code, write_audio_only, write_frame_folder, write_video

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "videos"
PICKS = [0, 5, 59, 30, 31, 7, 7, 58, 1]          # any order, with a repeat


def has_encoder(name):
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:
        return False


def plain_decode(path):
    """Independent reference: every frame, in decoder output order."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    out = {
        "mp4": write_video(d / "a.mp4", 60, codec="libx264", gop=12, bframes=3),
        "mp4_long_gop": write_video(d / "b.mp4", 60, codec="libx264", gop=250, bframes=2),
        "avi": write_video(d / "c.avi", 60, codec="mpeg4", gop=10),
    }
    if has_encoder("libvpx-vp9"):
        out["webm"] = write_video(d / "d.webm", 60, codec="libvpx-vp9", gop=20)
    return out


@pytest.mark.parametrize("threads", [1, 0])
@pytest.mark.parametrize("kind", ["mp4", "mp4_long_gop", "avi", "webm"])
def test_exact_frames_by_code(videos, kind, threads):
    if kind not in videos:
        pytest.skip("this PyAV build has no libvpx-vp9 encoder")
    frames = read_frames(videos[kind], PICKS, threads=threads)
    assert frames.shape == (len(PICKS), 48, 64, 3) and frames.dtype == np.uint8
    assert [read_code(f) for f in frames] == PICKS
    ref = plain_decode(videos[kind])
    assert all(np.array_equal(f, ref[i]) for f, i in zip(frames, PICKS))


def test_timestamp_path_is_used_for_mp4(videos, monkeypatch):
    def fail(*a, **k):
        raise AssertionError("fell back to counting")
    monkeypatch.setattr(_pyav, "_decode_by_counting", fail)
    for threads in (1, 2):
        assert [read_code(f) for f in read_frames(videos["mp4"], PICKS, threads=threads)] == PICKS


def test_probe(videos):
    info = probe(videos["mp4"])
    assert (info.num_frames, info.width, info.height) == (60, 64, 48)
    assert info.fps == pytest.approx(30) and info.duration == pytest.approx(2.0, abs=0.05)
    assert probe(videos["avi"], exact=True).num_frames == 60


def test_read_clip_samples_with_the_frame_count(videos):
    frames, idx, info = read_clip(videos["mp4"], lambda n: sparse_indices(n, 8, split="val"))
    assert info.num_frames == 60
    assert idx.tolist() == [3, 10, 18, 25, 33, 40, 47, 55]
    assert [read_code(f) for f in frames] == idx.tolist()


def test_iter_frames(videos):
    assert [read_code(f) for f in iter_frames(videos["avi"])] == list(range(60))


@pytest.mark.parametrize("name", ["test.mp4", "test.avi"])
def test_real_clips_match_plain_decode(name):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared sample videos not present at {SHARED}")
    ref = plain_decode(path)
    assert probe(path).num_frames == len(ref)
    rng = np.random.default_rng(0)
    for picks in [sparse_indices(len(ref), 8, split="val"), rng.integers(0, len(ref), 12), [len(ref) - 1, 0]]:
        got = read_frames(path, picks, threads=1)
        assert all(np.array_equal(g, ref[int(i)]) for g, i in zip(got, picks))


def test_variable_frame_rate(tmp_path):
    times = [0.0, 0.04, 0.08, 0.5, 0.52, 1.4, 1.45, 1.5, 3.0, 3.1]
    path = write_video(tmp_path / "vfr.mp4", len(times), timestamps=times)
    assert probe(path, exact=True).num_frames == 10
    assert [read_code(f) for f in read_frames(path, [9, 3, 5, 0])] == [9, 3, 5, 0]


def test_rotation_metadata_keeps_stored_frames(tmp_path):
    path = write_video(tmp_path / "rot.mp4", 10, width=64, height=48, rotation=90)
    frames = read_frames(path, [2, 8])
    assert frames.shape == (2, 48, 64, 3) and [read_code(f) for f in frames] == [2, 8]


def test_odd_dimensions(tmp_path):
    path = write_video(tmp_path / "odd.mkv", 12, width=67, height=45, codec="ffv1")
    frames = read_frames(path, [11, 4])
    assert frames.shape == (2, 45, 67, 3) and [read_code(f) for f in frames] == [11, 4]
    assert (probe(path).width, probe(path).height) == (67, 45)


def test_one_frame_video(tmp_path):
    path = write_video(tmp_path / "one.mp4", 1)
    assert probe(path).num_frames == 1
    assert [read_code(f) for f in read_frames(path, sparse_indices(1, 8))] == [0] * 8
    with pytest.raises(VideoError, match="frame 1 requested"):
        read_frames(path, [1])


def test_video_with_audio(tmp_path):
    path = write_video(tmp_path / "av.mp4", 20, audio=True)
    assert [read_code(f) for f in read_frames(path, [19, 0])] == [19, 0]


@pytest.mark.parametrize("case", ["audio_only", "random_bytes", "empty", "missing", "truncated_mp4",
                                  "truncated_mkv", "text"])
def test_bad_files_raise_video_error_naming_the_file(tmp_path, case):
    path = tmp_path / f"{case}.mp4"
    if case == "audio_only":
        path = write_audio_only(tmp_path / "audio.m4a")
    elif case == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(20000))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not a video\n")
    elif case.startswith("truncated"):
        ext = "mp4" if case.endswith("mp4") else "mkv"
        opts = {"movflags": "faststart"} if ext == "mp4" else {}
        full = tmp_path / f"full.{ext}"
        write_video(full, 60, width=160, height=120, gop=10)
        if opts:  # rewrite with the index first so a truncated copy still opens
            with av.open(str(full)) as src, av.open(str(path), "w", options=opts) as dst:
                s = dst.add_stream_from_template(src.streams.video[0])
                for p in src.demux(src.streams.video[0]):
                    if p.dts is not None:
                        p.stream = s
                        dst.mux(p)
            data = path.read_bytes()
        else:
            data = full.read_bytes()
            path = tmp_path / "cut.mkv"
        path.write_bytes(data[:len(data) // 2])
    t0 = time.monotonic()
    with pytest.raises(VideoError) as e:
        read_frames(path, [0, 59])
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert time.monotonic() - t0 < 10
    if case != "truncated_mkv":  # the fast probe trusts the header; the exact one counts packets
        with pytest.raises(VideoError):
            probe(path, exact=case.startswith("truncated"))


def _decode_threads():
    return [t for t in threading.enumerate() if t.name == "uniformerv2-decode"]


def test_hard_time_limit_abandons_a_blocked_read():
    """The caller waits at most the limit (+ grace) for work blocked where no deadline check runs (a hung file
    system); the abandoned thread ends as soon as the blocking call returns."""
    from uniformerv2.data._deadline import call_with_deadline

    release = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(VideoError, match="time limit"):
        call_with_deadline(lambda d: release.wait(30), 0.3, "slow.mp4")
    assert time.monotonic() - t0 < 2
    release.set()
    for _ in range(100):
        if not _decode_threads():
            break
        time.sleep(0.01)
    assert not _decode_threads()


@pytest.mark.parametrize("kind", ["fifo", "device", "symlink_loop", "broken_link", "unreadable"])
def test_special_and_unreadable_files_are_refused_without_opening(tmp_path, kind):
    path = tmp_path / f"{kind}.mp4"
    if kind == "fifo":
        os.mkfifo(path)               # opening it for reading would block until someone writes
        expected = "FIFO"
    elif kind == "device":
        path.symlink_to("/dev/null")
        expected = "character device"
    elif kind == "symlink_loop":
        path.symlink_to(path.name)
        expected = "symbolic link loop"
    elif kind == "broken_link":
        path.symlink_to(tmp_path / "gone.mp4")
        expected = "broken symbolic link"
    else:
        if os.geteuid() == 0:
            pytest.skip("running as root: file permissions do not stop reading")
        write_video(path, 5)
        path.chmod(0)
        expected = "permission denied"
    t0 = time.monotonic()
    for call in (lambda: read_frames(path, [0], timeout=5), lambda: probe(path, timeout=5)):
        with pytest.raises(VideoError, match=expected) as e:
            call()
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert time.monotonic() - t0 < 3
    assert not _decode_threads()          # nothing left blocked behind


def test_max_pixels_and_stream_options(videos):
    with pytest.raises(VideoError, match="64x48 is over the limit of 1000 pixels"):
        read_frames(videos["mp4"], [0], max_pixels=1000)
    with pytest.raises(VideoError, match="over the limit"):
        probe(videos["mp4"], max_pixels=1000)
    with pytest.raises(UserError, match="stream=1 asked but the file has 1 video stream"):
        read_frames(videos["mp4"], [0], stream=1)
    assert read_frames(videos["mp4"], [3], stream=0, max_pixels=64 * 48).shape == (1, 48, 64, 3)


def test_frame_folder_one_based_and_bgr(tmp_path):
    d = write_frame_folder(tmp_path / "v", 20, start=1)
    frames, idx, info = read_clip(d, lambda n: sparse_indices(n, 4, split="val"))
    assert info.num_frames == 20 and [read_code(f) for f in frames] == idx.tolist() == [2, 7, 12, 16]
    assert frames[0, -2, 5].argmax() == 0                     # red bottom band: RGB
    bgr = read_frames(d, [3], bgr=True)
    assert bgr[0, -2, 5].argmax() == 2 and read_code(bgr[0]) == 3
    z = write_frame_folder(tmp_path / "z", 5, template="{:05d}.jpg", start=0)
    assert [read_code(f) for f in read_frames(z, [4, 0], template="{:05d}.jpg", start_index=0)] == [4, 0]
    with pytest.raises(VideoError):
        read_frames(d, [20])


def test_unknown_and_missing_backends(videos):
    with pytest.raises(UserError, match="unknown decoding backend"):
        read_frames(videos["mp4"], [0], backend="ffmpeg-cli")
    for name, module in (("decord", "decord"), ("opencv", "cv2")):
        try:
            __import__(module)
        except ImportError:
            with pytest.raises(UserError, match=f"uniformerv2\\[{name}\\]"):
                read_frames(videos["mp4"], [0], backend=name)
        else:
            assert [read_code(f) for f in read_frames(videos["mp4"], PICKS, backend=name)] == PICKS


def test_benchmark_video_has_b_frames_and_reads_exactly(tmp_path):
    from uniformerv2.bench.decode import decode_everything
    from uniformerv2.bench.videos import write_kinetics_like

    path = write_kinetics_like(tmp_path / "k.mp4", gop=250, seconds=1.0, width=96, height=64)
    with av.open(str(path)) as c:
        types = [int(f.pict_type) for f in c.decode(video=0)]   # 1 I, 2 P, 3 B
    assert 3 in types and types.count(1) == 1
    picks = sparse_indices(30, 8, split="val")
    assert np.array_equal(read_frames(path, picks, threads=1), decode_everything(path, picks))


def _package_imports(module: str) -> set[str]:
    """Modules of the package that ``module`` imports anywhere (top level or inside functions)."""
    import ast
    import importlib.util

    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    parts = module.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("uniformerv2"):
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("uniformerv2"))
    return out - {"uniformerv2", "uniformerv2.data"}


def _is_module(name: str) -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:      # a name imported from a module, not a submodule
        return False


def test_decoder_backends_sit_behind_a_leaf_module():
    """``data.video`` is the leaf; every backend imports only it (plus errors and the deadline helper); only
    ``data.decode`` picks backends. No backend imports ``decode`` back."""
    leaf = {"uniformerv2.errors", "uniformerv2.data._deadline", "uniformerv2.data.video"}
    assert _package_imports("uniformerv2.data.video") <= {"uniformerv2.errors"}
    assert _package_imports("uniformerv2.data._deadline") <= {"uniformerv2.errors"}
    for backend in ("_pyav", "frame_folder", "_decord", "_opencv"):
        assert _package_imports(f"uniformerv2.data.{backend}") <= leaf, backend
    assert "uniformerv2.data.decode" not in _package_imports("uniformerv2.data.lists")


def test_iter_frames_time_limit_is_per_frame(videos):
    """A slow consumer does not run out of time: the limit bounds the wait for each frame, not the whole loop."""
    frames = iter_frames(videos["mp4"], timeout=0.3)
    codes = []
    for f in frames:
        codes.append(read_code(f))
        if len(codes) in (1, 30):
            time.sleep(0.4)
    assert codes == list(range(60))
