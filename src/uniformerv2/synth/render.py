"""Render synthetic clips whose class is visible only in the *order* of their frames.

Every class is one half of a time-reversal pair: the forward class ramps one attribute of a target
object (x, y, size, angle or opacity) linearly over the clip and its partner is the very same clip
played backwards, so both classes of a pair have exactly the same frames.  Across pairs the
per-frame distribution is balanced too: attributes that a clip does not ramp are drawn as the value
of a freshly sampled ramp at a random frame, so any single frame has the same distribution whatever the
class (and a time-average of per-frame features has the same mean).  Everything else is per-clip
nuisance: shape, colour, a static textured background, 0-2 static distractor objects, and per-pixel
noise.  The target is large (about a quarter of the frame across) and so is its motion (it crosses
nearly half the frame, or grows 2-2.4x), so that a small model trained from scratch on a CPU finds it
within a few hundred steps: with a smaller target the tiny model stays at chance for longer, by an amount
that varies more from seed to seed.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

# class name -> (attribute ramped, +1 forward / -1 reversed); partners are adjacent
PAIRS = [
    ("moving right", "moving left", "x"),
    ("moving down", "moving up", "y"),
    ("growing", "shrinking", "scale"),
    ("rotating clockwise", "rotating counterclockwise", "angle"),
    ("fading in", "fading out", "opacity"),
]
CLASSES = {}
for _i, (_fwd, _rev, _attr) in enumerate(PAIRS):
    CLASSES[_fwd] = (_i, _attr, +1)
    CLASSES[_rev] = (_i, _attr, -1)
del _i, _fwd, _rev, _attr
AVAILABLE_CLASSES = [n for f, r, _ in PAIRS for n in (r, f) if n.startswith("moving")] + [
    n for f, r, _ in PAIRS[2:] for n in (f, r)]
DEFAULT_CLASSES = AVAILABLE_CLASSES[:6]  # moving left/right/up/down, growing, shrinking

SHAPES = ("square", "disc", "triangle", "cross")
_SS = 4  # supersampling factor for anti-aliased shape masks

# geometry, as fractions of the frame size
_HALF_TRAVEL = (0.22, 0.24)   # half the total displacement of a moving target
_RADIUS_MID = (0.12, 0.14)    # circumradius of the target at mid-clip
_GROWTH = (2.0, 2.4)          # size ratio last/first frame when growing
_ROTATION = (math.radians(120), math.radians(160))  # total turn over the clip
_ALPHA_LOW = (0.1, 0.2)       # opacity at the start of "fading in"
_EXTENT = _HALF_TRAVEL[1] + _RADIUS_MID[1] * math.sqrt(_GROWTH[1]) + 0.02  # keeps targets in view


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices (N, 2) with circumradius 1; none is invariant under the turns used per frame."""
    if shape == "square":
        a = np.radians([45, 135, 225, 315])
    elif shape == "triangle":
        a = np.radians([-90, 30, 150])
    elif shape == "disc":  # a disc with a notch, so that rotation is visible
        a = np.radians(np.arange(25, 336, 15))
        return np.vstack([[[0.0, 0.0]], np.stack([np.cos(a), np.sin(a)], 1)])
    elif shape == "cross":
        w = 0.35
        pts = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1),
               (-w, -1), (-w, -w), (-1, -w), (-1, w), (-w, w), (-w, 1)]
        p = np.array(pts, dtype=np.float64)
        return p / np.hypot(1, w)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.stack([np.cos(a), np.sin(a)], 1)


def _mask(poly: np.ndarray, cx: float, cy: float, r: float, angle: float, size: int) -> np.ndarray:
    """Anti-aliased coverage (H, W) float32 in [0, 1] of a polygon placed, scaled and turned.

    Image coordinates have y pointing down, so increasing ``angle`` turns clockwise on screen."""
    c, s = math.cos(angle), math.sin(angle)
    rot = poly @ np.array([[c, s], [-s, c]])
    pts = (rot * r + (cx, cy)) * _SS
    img = Image.new("L", (size * _SS, size * _SS), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in pts], fill=255)
    return np.asarray(img.reduce(_SS), dtype=np.float32) / 255.0


def _muted(rng, n=1) -> np.ndarray:
    return rng.uniform(35, 150, size=(n, 3)).astype(np.float32)


def _bright(rng) -> np.ndarray:
    h, s, v = rng.uniform(0, 1), rng.uniform(0.6, 1.0), rng.uniform(0.85, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    rgb = v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
    return (rgb * 255).astype(np.float32)


def _background(rng, size: int) -> np.ndarray:
    """A static textured background (H, W, 3) float32: smooth noise, stripes or blobs."""
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c = _muted(rng, 1)
    c = np.concatenate([c, np.clip(c + rng.uniform(-40, 40, size=(1, 3)), 20, 170)])  # low contrast
    if kind == 0:  # smooth noise between two colours
        g = int(rng.integers(3, 9))
        low = Image.fromarray((rng.uniform(0, 1, (g, g)) * 255).astype(np.uint8))
        w = np.asarray(low.resize((size, size), Image.BICUBIC), np.float32) / 255.0
    elif kind == 1:  # stripes of random orientation and period
        phi, freq = rng.uniform(0, np.pi), rng.uniform(2, 6)
        w = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(phi) + yy * np.sin(phi)) + rng.uniform(0, 6.3))
    else:  # soft blobs
        w = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(3, 7))):
            bx, by, bs = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.25)
            w += np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * bs ** 2))
        w = np.clip(w, 0, 1)
    return c[0] * (1 - w[..., None]) + c[1] * w[..., None]


def _ramp(attr: str, rng, t: np.ndarray) -> np.ndarray:
    """Per-frame change of ``attr`` over normalised time ``t`` in [0, 1] (forward direction)."""
    if attr in ("x", "y"):
        return rng.uniform(*_HALF_TRAVEL) * 2 * (t - 0.5)          # fraction of frame size
    if attr == "scale":
        return rng.uniform(*_GROWTH) ** (t - 0.5)                   # multiplies the radius
    if attr == "angle":
        return rng.uniform(*_ROTATION) * (t - 0.5)                  # radians
    if attr == "opacity":
        lo = rng.uniform(*_ALPHA_LOW)
        return lo + (1 - lo) * t
    raise ValueError(attr)


def render_clip(class_name: str, seed, *, frames: int = 16, size: int = 64,
                balance_opacity: bool = False) -> np.ndarray:
    """Render one clip of ``class_name`` as a ``(frames, size, size, 3)`` uint8 RGB array.

    The clip is a deterministic function of ``seed`` (anything ``numpy.random.default_rng``
    accepts); the two classes of a pair with the same seed give exactly time-reversed arrays.
    ``balance_opacity`` gives non-fading classes a random static opacity drawn like a fading
    frame's, which keeps the per-frame statistics of all classes equal when fading classes are
    in the class set (otherwise every target is opaque)."""
    return _render(class_name, seed, frames, size, balance_opacity)[0]


def target_masks(class_name: str, seed, *, frames: int = 16, size: int = 64,
                 balance_opacity: bool = False) -> np.ndarray:
    """Where the target is in each frame of ``render_clip`` with the same arguments: ``(frames, size, size)``
    float32 coverage in [0, 1] (anti-aliased, before its opacity). The target is drawn last, so nothing hides
    it; the distractors are static and the background does not move, so it is the clip's only moving object."""
    return _render(class_name, seed, frames, size, balance_opacity)[1]


def _render(class_name: str, seed, frames: int, size: int, balance_opacity: bool) -> tuple[np.ndarray, np.ndarray]:
    """The clip and the target's per-frame coverage (see ``render_clip`` and ``target_masks``)."""
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; available: {', '.join(AVAILABLE_CLASSES)}")
    if frames < 2 or size < 8:
        raise ValueError("need frames >= 2 and size >= 8")
    _, ramped, direction = CLASSES[class_name]
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, frames)
    bg = _background(rng, size)
    # target: ramp one attribute; every other one is a ramp's value at a random frame (balance)
    attrs = {}
    for attr in ("x", "y", "scale", "angle", "opacity"):
        ramp = _ramp(attr, rng, t)
        k = int(rng.integers(frames))
        attrs[attr] = ramp if attr == ramped else np.full(frames, ramp[k])
    if ramped != "opacity" and not balance_opacity:
        attrs["opacity"] = np.ones(frames)
    base = rng.uniform(_EXTENT, 1 - _EXTENT, size=2)
    theta0 = rng.uniform(0, 2 * np.pi)
    r_mid = rng.uniform(*_RADIUS_MID)
    poly = _unit_polygon(SHAPES[rng.integers(len(SHAPES))])
    colour = _bright(rng)
    xs = (base[0] + attrs["x"]) * size
    ys = (base[1] + attrs["y"]) * size
    radius = r_mid * attrs["scale"] * size
    angles = theta0 + attrs["angle"]
    # distractors: static (identical when reversed), drawn behind the target
    distractors = []
    for _ in range(int(rng.integers(3))):
        r = rng.uniform(0.04, 0.065)
        p0 = rng.uniform(r + 0.02, 0.98 - r, size=2)
        path = np.broadcast_to(p0, (frames, 2))
        distractors.append((_unit_polygon(SHAPES[rng.integers(len(SHAPES))]), path * size,
                            r * size, rng.uniform(0, 2 * np.pi), _bright(rng)))
    sigma = rng.uniform(1.0, 3.0)
    noise = rng.normal(0.0, sigma, size=(frames, size, size, 3)).astype(np.float32)

    out = np.empty((frames, size, size, 3), np.uint8)
    target = np.empty((frames, size, size), np.float32)
    for i in range(frames):
        img = bg.copy()
        layers = [(p, path[i, 0], path[i, 1], r, a, col, 1.0) for p, path, r, a, col in distractors]
        layers.append((poly, xs[i], ys[i], radius[i], angles[i], colour, attrs["opacity"][i]))
        for p, cx, cy, r, a, col, alpha in layers:
            cover = _mask(p, cx, cy, r, a, size)
            m = cover[..., None] * np.float32(alpha)
            img = img * (1 - m) + col * m
        target[i] = cover  # the target is the last layer
        out[i] = np.clip(np.rint(img + noise[i]), 0, 255).astype(np.uint8)
    if direction > 0:
        return out, target
    return np.ascontiguousarray(out[::-1]), np.ascontiguousarray(target[::-1])
