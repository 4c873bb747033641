"""Frame ``i`` is the ``i``-th frame a full decode yields, for every kind of real-world file the reader meets.

Every file is written here with PyAV (no binaries). For each one, the sparse reader's frames are compared
pixel for pixel with an independent full decode, for several index sets, and ``probe`` must count the same
frames. Cases: B-frames, edit-list trims (the lead-in an ``ffmpeg -ss ... -c copy`` cut leaves), streams starting
mid-GOP, open GOPs cut at a keyframe with leading pictures, AV1 (libdav1d), VP9, MPEG-4, MPEG-2, MPEG-TS,
variable frame rate, a cover picture stored as the first video stream.
"""
from __future__ import annotations

import av
import numpy as np
import pytest

from uniformerv2.data import _pyav
from uniformerv2.data.decode import iter_frames, probe, read_frames
from uniformerv2.data.sampling import sparse_indices
from videogen import read_code, trim_edit_list, write_video

N = 48


def has_codec(name, mode="w"):
    return name in av.codecs_available and _opens(name, mode)


def _opens(name, mode):
    try:
        av.codec.Codec(name, mode)
        return True
    except Exception:
        return False


AV1 = has_codec("libsvtav1") and has_codec("libdav1d", "r")
AV1_REASON = "this PyAV build lacks the libsvtav1 encoder or the libdav1d decoder"
OPEN_GOP_264 = {"x264-params": "open-gop=1:keyint=12:min-keyint=12:scenecut=0"}
OPEN_GOP_265 = {"x265-params": "open-gop=1:keyint=12:min-keyint=12:scenecut=0:bframes=3:log-level=error"}
QUIET_265 = {"x265-params": "log-level=error"}


def _edit(path, frames):
    return trim_edit_list(path, frames)


# name -> (file name, write_video keyword arguments, frames trimmed by the edit list, codec needed, trusted)
CASES = {
    "h264_bframes_mp4": ("a.mp4", dict(gop=12, bframes=2), 0, None, True),
    "h264_editlist3_mp4": ("a.mp4", dict(gop=12, bframes=2), 3, None, True),
    "h264_editlist15_mp4": ("a.mp4", dict(gop=12, bframes=2), 15, None, True),
    "hevc_editlist_mp4": ("a.mp4", dict(codec="libx265", gop=12, options=QUIET_265), 5, "libx265", True),
    "av1_editlist_mp4": ("a.mp4", dict(codec="libsvtav1", gop=12), 5, "av1", True),
    "h264_midgop_mkv": ("a.mkv", dict(gop=12, bframes=2, drop_packets=5), 0, None, True),
    "hevc_midgop_mkv": ("a.mkv", dict(codec="libx265", gop=12, drop_packets=5, options=QUIET_265), 0, "libx265", True),
    "vp9_midgop_webm": ("a.webm", dict(codec="libvpx-vp9", gop=12, drop_packets=5), 0, "libvpx-vp9", True),
    "mpeg4_midgop_mkv": ("a.mkv", dict(codec="mpeg4", gop=12, drop_packets=5), 0, "mpeg4", True),
    "av1_midgop_mkv": ("a.mkv", dict(codec="libsvtav1", gop=12, drop_packets=5), 0, "av1", True),
    "h264_opengop_mkv": ("a.mkv", dict(gop=12, bframes=3, options=OPEN_GOP_264), 0, None, True),
    "h264_opengop_cut_mkv": ("a.mkv", dict(gop=12, bframes=3, options=OPEN_GOP_264, drop_packets=9), 0, None, True),
    "h264_opengop_cut_mp4": ("a.mp4", dict(gop=12, bframes=3, options=OPEN_GOP_264, drop_packets=9), 0, None, True),
    "hevc_opengop_cut_mkv": ("a.mkv", dict(codec="libx265", gop=12, options=OPEN_GOP_265, drop_packets=9), 0,
                             "libx265", True),
    "av1_mkv": ("a.mkv", dict(codec="libsvtav1", gop=12), 0, "av1", True),
    "av1_mp4": ("a.mp4", dict(codec="libsvtav1", gop=30), 0, "av1", True),
    "vp9_webm": ("a.webm", dict(codec="libvpx-vp9", gop=20), 0, "libvpx-vp9", True),
    "mpeg2_bframes_mpg": ("a.mpg", dict(codec="mpeg2video", gop=12, bframes=2), 0, "mpeg2video", True),
    "mpeg1_bframes_mpg": ("a.mpg", dict(codec="mpeg1video", gop=12, bframes=2), 0, "mpeg1video", True),
    "mpeg4_bframes_mkv": ("a.mkv", dict(codec="mpeg4", gop=12, bframes=2), 0, "mpeg4", True),
    "h264_ts": ("a.ts", dict(gop=12, bframes=2), 0, None, True),
    "vfr_mkv": ("a.mkv", dict(timestamps=[0.1 * i + 0.37 * (i // 7) + 0.013 * (i % 3) for i in range(N)], gop=10,
                              bframes=2), 0, None, True),
    "thumbnail_first_mkv": ("a.mkv", dict(gop=12, bframes=2, thumbnail=True), 0, None, True),
    "thumbnail_first_mp4": ("a.mp4", dict(gop=12, bframes=2, thumbnail=True), 0, None, True),
    "mpeg4_avi": ("a.avi", dict(codec="mpeg4", gop=10), 0, None, False),
}


def reference(path, stream_index=None):
    """Independent full decode: every packet from the first keyframe on, in decoding order, then the frames in
    the order the decoder returns them. (H.264/HEVC decoders drop the frames before the first keyframe
    themselves; MPEG-4 would show grey garbage for them and VP9 fails on them.)"""
    with av.open(str(path)) as c:
        streams = list(c.streams.video)
        s = streams[stream_index] if stream_index is not None else max(streams, key=lambda v: v.frames or 0)
        started, out = False, []
        for packet in c.demux(s):
            started = started or bool(packet.is_keyframe)
            if started or packet.size == 0:
                out += [f.to_ndarray(format="rgb24") for f in packet.decode()]
    return out


def plain_decode(path, stream_index):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=stream_index)]


def index_sets(n):
    rng = np.random.default_rng(n)
    return {"with 0, out of order, repeated, last": [n - 1, 0, n // 2, n // 2, 1],
            "without 0": [i for i in (1, 4, 7, 10, 12) if i < n],
            "last only": [n - 1],
            "random": rng.permutation(n)[:7].tolist() + [int(rng.integers(n))],
            "sparse val": sparse_indices(n, 8, split="val").tolist()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    cache = {}

    def get(name):
        if name not in cache:
            fname, kwargs, trim, need, _ = CASES[name]
            if need == "av1" and not AV1:
                pytest.skip(AV1_REASON)
            if need not in (None, "av1") and not has_codec(need):
                pytest.skip(f"this PyAV build has no {need} encoder")
            d = root / name
            d.mkdir()
            path = write_video(d / fname, N, **kwargs)
            if trim:
                trim_edit_list(path, trim)
            stream = 1 if kwargs.get("thumbnail") else 0
            cache[name] = (path, reference(path, stream), stream)
        return cache[name]
    return get


@pytest.mark.parametrize("name", list(CASES))
def test_reader_matches_full_decode(files, name, monkeypatch):
    path, ref, stream = files(name)
    n = len(ref)
    assert n >= 24
    assert probe(path).num_frames == n
    if CASES[name][4]:   # the sparse path must do the work, not the decode-everything fallback
        def fail(*a, **k):
            raise AssertionError("fell back to decoding from the start")
        monkeypatch.setattr(_pyav, "_decode_by_counting", fail)
    for threads in (1, 0):
        for label, picks in index_sets(n).items():
            got = read_frames(path, picks, threads=threads)
            for g, i in zip(got, picks):
                assert np.array_equal(g, ref[i]), f"{name} {label} threads={threads}: frame {i} differs"
    if CASES[name][1].get("thumbnail"):
        assert read_code(read_frames(path, [0], stream=0)[0]) == 65535        # the cover picture, when asked for


@pytest.mark.parametrize("name", ["h264_editlist15_mp4", "hevc_opengop_cut_mkv", "mpeg4_midgop_mkv", "av1_mkv"])
def test_iter_frames_is_the_same_sequence(files, name):
    path, ref, _ = files(name)
    got = list(iter_frames(path))
    assert len(got) == len(ref) and all(np.array_equal(a, b) for a, b in zip(got, ref))


@pytest.mark.parametrize("name", ["h264_editlist3_mp4", "h264_editlist15_mp4", "h264_midgop_mkv",
                                  "hevc_midgop_mkv", "h264_opengop_cut_mkv", "hevc_opengop_cut_mkv"])
def test_definition_is_a_plain_full_decode_for_h264_and_hevc(files, name):
    """For these decoders the reference above is exactly what ``container.decode`` returns."""
    path, ref, stream = files(name)
    plain = plain_decode(path, stream)
    assert len(plain) == len(ref) and all(np.array_equal(a, b) for a, b in zip(plain, ref))


def test_trimmed_and_cut_files_show_the_right_content(files):
    """Golden content: the edit list hides the first 15 frames; the mid-GOP cut starts at the next keyframe."""
    path, ref, _ = files("h264_editlist15_mp4")
    assert [read_code(f) for f in read_frames(path, [0, 17, 32])] == [15, 32, 47]
    path, ref, _ = files("h264_midgop_mkv")
    assert len(ref) == 36 and [read_code(f) for f in read_frames(path, [27, 0])] == [39, 12]


@pytest.mark.skipif(not AV1, reason=AV1_REASON)
def test_av1_without_frame_0_out_of_order(files):
    path, _, _ = files("av1_mkv")
    picks = [12, 1, 7, 4, 10]
    assert [read_code(f) for f in read_frames(path, picks)] == picks


def test_a_cover_picture_is_not_taken_for_the_video(tmp_path):
    """An audio file whose only video stream is its cover art (attached-picture disposition)."""
    from uniformerv2.errors import VideoError
    from videogen import _write_silence, frame_image

    path = tmp_path / "song.mp4"
    with av.open(str(path), "w") as out:
        audio = out.add_stream("aac", rate=16000)
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 64, 48, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(frame_image(5, 64, 48), format="rgb24")
        for packet in list(cover.encode(picture)) + list(cover.encode()):
            out.mux(packet)
        _write_silence(out, audio, 1.0)
    with pytest.raises(VideoError, match="no video stream \\(only a cover picture\\)"):
        probe(path)
