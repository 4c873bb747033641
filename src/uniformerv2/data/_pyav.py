"""PyAV backend: exactly the frames asked for, decoding as little as possible.

Frame ``i`` is the ``i``-th frame that decoding the stream from its first keyframe yields, in presentation order,
after the edit list (see ``video``). Per file:

1. **Frame table.** Every packet is demuxed once, without decoding (a few ms). Packets that decode to nothing are
   left out: those the container's edit list marks for discarding (FFmpeg drops their frames), those before the
   first keyframe (their references are not in the file), and leading pictures of the first keyframe that the
   decoder drops (open-GOP cuts: found by decoding the first few packets, only when such pictures exist). Frame
   ``i`` is then the ``i``-th smallest presentation timestamp of what is left. The same table gives ``probe``'s
   count and the truncation checks (MP4/MOV: the sample index; Matroska/WebM: the declared duration; others:
   the declared frame count).
2. **Sparse decoding.** For each wanted frame, decoding starts at the last keyframe that precedes it both in
   decoding and in presentation order (a leading picture of an open GOP needs the GOP before), seeking when that
   skips more than ``SEEK_GAP`` packets and decoding straight on otherwise. Every decoded frame is identified by
   its timestamp; frames that cannot be trusted (an unknown timestamp, out of order, a frame missing in a run
   decoded without skipping) send the read to the counting path below. Non-target packets are decoded with
   ``skip_frame="NONREF"`` only for decoders that read that option per packet (``SKIP_PER_PACKET``); libdav1d, for
   one, reads it only when it opens, so it is never set for other decoders.
3. Only the target frames are converted to RGB, and resized at once when the request asks for a short side.

Containers whose timestamps cannot be trusted (AVI, missing or repeated timestamps) and reads that hit one of the
checks above decode from the first keyframe and count frames in output order: the definition itself.
A target frame that the decoder flags as corrupt (e.g. the cut last frame of a truncated MPEG-TS) raises.
"""
from __future__ import annotations

import bisect
import errno
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError, VideoError
from ._deadline import Deadline
from .video import ReadRequest, VideoInfo, check_size, check_video_path, describe_os_error, finish_frame, \
    pick_indices, stack_frames

SEEK_GAP = 4                 # seek only when that skips more than this many packets (a seek is cheap: a flush)
UNTRUSTED_FORMATS = {"avi"}
SKIP_PER_PACKET = frozenset({"h264", "hevc", "mpeg4", "mpeg1video", "mpeg2video"})   # FFmpeg's own decoders


class _Untrusted(Exception):
    """The decoded frames disagree with the table: redo by counting."""


# ----------------------------------------------------------------------------------------------- opening
def open_container(path, deadline: Deadline):
    import av

    check_video_path(path)
    t = deadline.remaining()
    try:
        return av.open(str(path), timeout=None if t is None else (t, t))
    except OSError as e:   # PyAV's errors are OSErrors too; the errno tells a missing file from a bad one
        if e.errno in (errno.ENOENT, errno.ELOOP, errno.EACCES, errno.EPERM):
            raise VideoError(f"{path}: {describe_os_error(e)}") from e
        raise VideoError(f"{path}: cannot open video ({_reason(e)})") from e
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise VideoError(f"{path}: cannot open video ({_reason(e)})") from e


def candidate_streams(container, path, request: ReadRequest) -> list:
    """The video streams to choose from: ``request.stream`` alone, else those that are not cover pictures."""
    video = list(container.streams.video)
    if not video:
        raise VideoError(f"{path}: no video stream")
    if request.stream is not None:
        if request.stream >= len(video):
            raise UserError(f"{path}: stream={request.stream} asked but the file has {len(video)} video "
                            f"stream{'s' if len(video) != 1 else ''}")
        return [video[request.stream]]
    moving = [s for s in video if not _is_cover(s)]
    if not moving:
        raise VideoError(f"{path}: no video stream (only a cover picture)")
    return moving


def _is_cover(stream) -> bool:
    try:
        import av
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):   # pragma: no cover - older PyAV
        return False


def configure(stream, threads: int | None) -> None:
    if threads is not None:
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads


def declared_frames(stream, container) -> int:
    """Frame count the container states (MP4: from the edited duration), else duration x rate, else 0."""
    rate = stream.average_rate or stream.guessed_rate
    if stream.frames and _family(container) != "mov":
        return int(stream.frames)
    if stream.duration is not None and stream.time_base and rate:
        return int(round(float(stream.duration * stream.time_base * rate)))
    if container.duration and rate and len(container.streams) == 1:
        return int(round(container.duration / 1e6 * float(rate)))
    return int(stream.frames or 0)


def _family(container) -> str:
    names = container.format.name.split(",")
    return "mov" if "mov" in names else names[0]


# ----------------------------------------------------------------------------------------------- frame table
@dataclass
class _Packets:
    """One stream's non-empty packets in decoding order."""
    pts: list = field(default_factory=list)
    dts: list = field(default_factory=list)
    key: list = field(default_factory=list)
    discard: list = field(default_factory=list)
    end: float = 0.0                    # seconds: latest pts + duration


@dataclass
class FrameTable:
    stream: object                      # the chosen av stream
    pts: list                           # frame i's presentation timestamp, ascending
    packets: _Packets
    first_key: int                      # decoding position where decoding starts
    trusted: bool                       # timestamps usable for seeking and identifying frames
    dpos: dict = field(default_factory=dict)       # packet pts -> decoding position
    keyframes: list = field(default_factory=list)  # decoding positions of keyframes >= first_key

    def start_key(self, i: int) -> int:
        """Decoding position of the keyframe to decode frame ``i`` from: the last one before it in decoding
        order whose picture does not come after it (not one it is a leading picture of)."""
        p = self.pts[i]
        d = self.dpos[p]
        k = bisect.bisect_right(self.keyframes, d) - 1
        while k > 0 and self.packets.pts[self.keyframes[k]] > p:
            k -= 1
        return self.keyframes[max(k, 0)]


def build_table(container, path, request: ReadRequest, deadline: Deadline, resolve: bool = True) -> FrameTable:
    """Demux the whole file once and build the chosen stream's ``FrameTable`` (see the module docstring)."""
    import av

    candidates = candidate_streams(container, path, request)
    wanted = {s.index: _Packets() for s in candidates}
    ends: dict = {}                     # stream index -> latest pts + duration, in the stream's time base
    track_ends, count = _family(container) == "matroska", 0   # only Matroska's truncation check needs them
    try:
        for packet in container.demux():
            if packet.size == 0:
                continue
            count += 1
            if count % 64 == 0:
                deadline.check()
            i, pts = packet.stream_index, packet.pts
            if track_ends and pts is not None:
                end = pts + (packet.duration or 0)
                if end > ends.get(i, end - 1):
                    ends[i] = end
            rec = wanted.get(i)
            if rec is not None:
                rec.pts.append(pts)
                rec.dts.append(packet.dts)
                rec.key.append(packet.is_keyframe)
                rec.discard.append(packet.is_discard)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: corrupt or truncated after {count} packets ({_reason(e)})") from e
    seconds = {i: float(end * container.streams[i].time_base) for i, end in ends.items()
               if container.streams[i].time_base and container.streams[i].type in ("audio", "video")}
    for i, rec in wanted.items():
        rec.end = seconds.get(i, 0.0)
    stream = max(candidates, key=lambda s: (_usable(wanted[s.index]), _declared_s(s, container), -s.index))
    packets = wanted[stream.index]
    configure(stream, request.threads)
    check_size(path, stream.codec_context.width, stream.codec_context.height, request.max_pixels)
    _check_truncation(path, container, stream, packets, max(seconds.values(), default=0.0))
    table = _make_table(container, stream, packets)
    if resolve and table.trusted:
        lead = _leading(table)
        if lead:
            try:
                shown = _Run(container, table, deadline, path).head_outputs(max(table.packets.pts[d] for d in lead))
            except _Untrusted:
                table.trusted = False
            except av.FFmpegError as e:
                raise VideoError(f"{path}: decoding failed ({_reason(e)})") from e
            else:
                dropped = {table.packets.pts[d] for d in lead} - shown
                table.pts = [p for p in table.pts if p not in dropped]
    return table


def _usable(p: _Packets) -> int:
    first = next((d for d, k in enumerate(p.key) if k), 0)
    return sum(1 for d in range(first, len(p.pts)) if not p.discard[d])


def _make_table(container, stream, p: _Packets) -> FrameTable:
    n = len(p.pts)
    keys = [d for d in range(n) if p.key[d]]
    first = keys[0] if keys else 0
    kept = [p.pts[d] for d in range(first, n) if not p.discard[d]]
    trusted = bool(keys) and None not in p.pts and len(set(p.pts)) == n \
        and _family(container) not in UNTRUSTED_FORMATS
    table = FrameTable(stream, sorted(kept) if trusted else kept, p, first, trusted)
    if trusted:
        table.dpos = {pts: d for d, pts in enumerate(p.pts)}
        table.keyframes = keys
    return table


def _leading(table: FrameTable) -> list:
    """Decoding positions of the first keyframe's leading pictures (after it in decoding order, before it on
    screen): whether the decoder shows them depends on the codec, so they are decoded to find out."""
    p, k = table.packets, table.first_key
    return [d for d in range(k + 1, len(p.pts)) if not p.discard[d] and p.pts[d] < p.pts[k]]


def _declared_s(stream, container) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    tagged = _tag_duration(stream)
    return tagged if tagged is not None else 0.0


def _tag_duration(stream) -> float | None:
    """Matroska's per-track ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``) in seconds."""
    m = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", str(stream.metadata.get("DURATION", "")).strip())
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else None


def _check_truncation(path, container, stream, packets: _Packets, all_end: float) -> None:
    """Fewer packets than the container's sample index (MP4/MOV) or declared frame count (AVI ...), or less time
    than the declared duration (Matroska/WebM, which state no frame count). MPEG-TS declares neither; a frame cut
    by the end of such a file is flagged by the decoder and refused when it is read."""
    n = len(packets.pts)
    family = _family(container)
    entries = getattr(stream, "index_entries", None) if family == "mov" else None
    if entries is not None:
        expected = sum(1 for e in entries if e.size > 0)
        if n < expected:
            raise VideoError(f"{path}: truncated: the index lists {expected} samples, {n} readable")
        return
    if family == "mov" and stream.duration and stream.time_base:          # PyAV without index_entries
        declared, seen = float(((stream.start_time or 0) + stream.duration) * stream.time_base), packets.end
    elif family == "matroska":
        declared, seen = _tag_duration(stream), packets.end
        if declared is None and container.duration:
            declared, seen = container.duration / 1e6, all_end   # the longest stream must reach it
    else:
        if stream.frames and n < stream.frames - 2:
            raise VideoError(f"{path}: truncated: container declares {stream.frames} frames, {n} readable")
        return
    rate = stream.average_rate or stream.guessed_rate
    interval = 1 / float(rate) if rate else 0.04
    if declared is not None and n and seen < declared - max(2.5 * interval, 0.01 * declared):
        raise VideoError(f"{path}: truncated: container declares {declared:.2f} s of video, "
                         f"{seen:.2f} s readable ({n} packets)")


def info_of(container, stream, n: int) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if stream.duration is not None and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1e6
    else:
        duration = n / fps if fps else 0.0
    ctx = stream.codec_context
    return VideoInfo(n, fps, int(ctx.width), int(ctx.height), duration)


# ----------------------------------------------------------------------------------------------- backend API
def probe(path, request: ReadRequest, deadline: Deadline, exact: bool = True) -> VideoInfo:
    with open_container(path, deadline) as container:
        if not exact:
            stream = max(candidate_streams(container, path, request),
                         key=lambda s: (declared_frames(s, container), -s.index))
            n = declared_frames(stream, container)
            if n > 0:
                return info_of(container, stream, n)
        table = build_table(container, path, request, deadline)
        info = info_of(container, table.stream, len(table.pts))
    if info.num_frames <= 0:
        raise VideoError(f"{path}: no decodable video frames")
    return info


def read_clip(path, sample, request: ReadRequest, deadline: Deadline):
    with open_container(path, deadline) as container:
        table = build_table(container, path, request, deadline)
        info = info_of(container, table.stream, len(table.pts))
        idx = pick_indices(path, sample, info.num_frames)
        frames = decode_frames(container, path, table, sorted(set(idx.tolist())), request, deadline)
        return stack_frames(path, frames, idx), idx, info


def iter_frames(path, request: ReadRequest, deadline: Deadline):
    """Every frame in order (uint8 RGB (H, W, 3), resized if asked); ``deadline`` restarts for each frame."""
    import av

    with open_container(path, deadline) as container:
        table = build_table(container, path, request, deadline, resolve=False)
        index, first_key = table.stream.index, table.first_key
    deadline.restart()
    with open_container(path, deadline) as container:
        stream = container.streams[index]
        configure(stream, request.threads)
        try:
            for frame in _decode_from_first_key(container, stream, first_key, deadline):
                check_size(path, frame.width, frame.height, request.max_pixels)
                yield _convert(path, frame, None, request)
                deadline.restart()
        except av.FFmpegError as e:
            raise VideoError(f"{path}: decoding failed ({_reason(e)})") from e


def decode_frames(container, path, table: FrameTable, wanted: list, request: ReadRequest,
                  deadline: Deadline) -> dict:
    """``{index: frame}`` for every index in ``wanted`` (sorted, unique)."""
    import av

    try:
        if table.trusted:
            try:
                return _Run(container, table, deadline, path, request).read(wanted)
            except _Untrusted:
                pass
        return _decode_by_counting(path, table, wanted, request, deadline)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: decoding failed ({_reason(e)})") from e


# ----------------------------------------------------------------------------------------------- decoding
class _Run:
    """Decoding by timestamp: a run starts at a keyframe (after a seek) and goes forward packet by packet."""

    def __init__(self, container, table: FrameTable, deadline: Deadline, path, request: ReadRequest | None = None):
        self.container, self.table, self.deadline, self.path = container, table, deadline, path
        self.request = request or ReadRequest()
        self.stream = table.stream
        self.ctx = self.stream.codec_context
        self.skip = self.ctx.name in SKIP_PER_PACKET
        self.frame_of = {p: i for i, p in enumerate(table.pts)}
        self.start = None         # decoding position of the run's keyframe; None: no run
        self.next = 0             # decoding position of the next packet
        self.last = -1            # index of the last frame taken in this run
        self.ended = False        # the decoder was drained at the end of the stream
        self.packets = iter(())
        self.held = None          # a packet read while looking for the start, not yet decoded

    # ---- runs
    def seek(self, key: int) -> None:
        import av

        p = self.table.packets
        # Some demuxers seek by decoding timestamp (MP4, MPEG-TS), others by presentation timestamp (Matroska):
        # the smaller of the two lands on this keyframe or before it; then the start of the stream.
        at_key = min(t for t in (p.pts[key], p.dts[key]) if t is not None)
        for attempt in range(2):
            ts = at_key if attempt == 0 else min(t for t in p.pts[:key + 1] + p.dts[:key + 1] if t is not None)
            try:
                self.container.seek(ts, stream=self.stream, backward=True)
            except av.FFmpegError:        # not seekable: count from the start instead
                raise _Untrusted from None
            self.packets = self.container.demux(self.stream)
            if self._skip_to(key):
                self.start, self.next, self.last, self.ended = key, key, -1, False
                return
        raise _Untrusted

    def _skip_to(self, key: int) -> bool:
        for packet in self.packets:
            if packet.size == 0:
                continue
            d = self.table.dpos.get(packet.pts)
            if d is None:           # e.g. a partial packet where a seek by bytes resynchronised
                continue
            if d == key:
                self.held = packet
                return True
            if d > key:
                return False
        return False

    def _valid(self, i: int) -> bool:
        """Frame ``i`` decodes in this run as in a full decode (not a leading picture of the run's keyframe)."""
        return self.start == self.table.first_key or self.table.pts[i] >= self.table.packets.pts[self.start]

    def _can_continue(self, t: int, key: int) -> bool:
        return (self.start is not None and not self.ended and t > self.last and self._valid(t)
                and self.table.dpos[self.table.pts[t]] >= self.start and key <= self.next + SEEK_GAP)

    def _step(self):
        """Decode the next packet (or drain at the end); returns the frames that came out."""
        self.deadline.check()
        packet, self.held = self.held, None
        while packet is None or packet.size == 0:
            packet = next(self.packets, None)
            if packet is None:
                if self.ended:
                    raise _Untrusted
                self.ended = True
                return self.ctx.decode(None)
        d = self.table.dpos.get(packet.pts)
        if d != self.next:
            raise _Untrusted
        self.next = d + 1
        if self.skip:
            self.ctx.skip_frame = "DEFAULT" if packet.pts in self.targets else "NONREF"
        return packet.decode()

    # ---- reading
    def read(self, wanted: list) -> dict:
        self.targets = {self.table.pts[i] for i in wanted}
        out, need = {}, set(wanted)
        try:
            for t in wanted:
                if t in out:
                    continue
                key = self.table.start_key(t)
                if not self._can_continue(t, key):
                    self.seek(key)
                while t not in out:
                    for frame in self._step():
                        self._take(frame, out, need)
                    if self.last >= t and t not in out or self.ended and t not in out:
                        raise _Untrusted
        finally:
            if self.skip:
                self.ctx.skip_frame = "DEFAULT"
        return out

    def _take(self, frame, out: dict, need: set) -> None:
        i = self.frame_of.get(frame.pts)
        if i is None:
            raise _Untrusted
        if not self._valid(i):
            return
        if i <= self.last or (not self.skip and self.last >= 0 and i != self.last + 1):
            raise _Untrusted
        self.last = i
        if i in need and i not in out:
            check_size(self.path, frame.width, frame.height, self.request.max_pixels)
            out[i] = _convert(self.path, frame, i, self.request)

    def head_outputs(self, until_pts) -> set:
        """Timestamps of the frames a decode from the first keyframe shows, up to the first one after
        ``until_pts`` (used to find which leading pictures the decoder drops)."""
        self.targets = set(self.table.packets.pts)
        self.seek(self.table.first_key)
        seen = set()
        while not self.ended:
            for frame in self._step():
                seen.add(frame.pts)
                if frame.pts is not None and frame.pts > until_pts:
                    return seen
        return seen


def _convert(path, frame, index, request: ReadRequest) -> np.ndarray:
    if frame.is_corrupt:
        where = "a frame" if index is None else f"frame {index}"
        raise VideoError(f"{path}: {where} is damaged (corrupt or truncated data)")
    return finish_frame(frame.to_ndarray(format="rgb24"), request)


def _decode_from_first_key(container, stream, first_key: int, deadline: Deadline):
    """Frames in output order, decoding from the packet at position ``first_key`` (the first keyframe)."""
    position = -1
    for packet in container.demux(stream):
        deadline.check()
        if packet.size == 0:
            continue
        position += 1
        if position >= first_key:
            yield from packet.decode()
    yield from stream.codec_context.decode(None)


def _decode_by_counting(path, table: FrameTable, wanted: list, request: ReadRequest, deadline: Deadline) -> dict:
    import av

    need, last, out, i = set(wanted), wanted[-1], {}, -1
    with open_container(path, deadline) as container:
        stream = container.streams[table.stream.index]
        configure(stream, request.threads)
        try:
            for i, frame in enumerate(_decode_from_first_key(container, stream, table.first_key, deadline)):
                if i in need:
                    check_size(path, frame.width, frame.height, request.max_pixels)
                    out[i] = _convert(path, frame, i, request)
                if i >= last:
                    break
        except av.FFmpegError as e:
            raise VideoError(f"{path}: decoding failed at frame {i + 1} ({_reason(e)})") from e
    missing = need.difference(out)
    if missing:
        raise VideoError(f"{path}: only {i + 1} frames decodable, frame {min(missing)} requested")
    return out


def _reason(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
