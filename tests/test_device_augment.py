"""Augmentation on the device (``data.device_augment``): every op against the CPU op and against PIL, the whole
training transform against ``ClipTransform`` for the same draws, the draws' distribution against the CPU
RandAugment's, padding/batching invariance, keying, repeats, mixup and the worker-side collate."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

from uniformerv2.data.device_augment import (TrainAugment, augment_generator, collate_clips, crop_resize,
                                             mixup_generator)
from uniformerv2.data.loader import sample_generator
from uniformerv2.data.mixup import Mixup
from uniformerv2.data.randaugment import FILL, OPS, RandAugment, Region, apply_plans
from uniformerv2.data.transforms import build_transform

LEVEL = 1 / (255 * 0.225)   # one uint8 step after the official normalisation


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def copy_of(g: torch.Generator) -> torch.Generator:
    c = torch.Generator()
    c.set_state(g.get_state())
    return c


def natural_clip(t, h, w, seed):
    """uint8 (T, H, W, 3): smooth gradients, edges and noise, with different statistics per frame."""
    g = gen(seed)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    frames = []
    for k in range(t):
        base = torch.stack([xx / w * 180 + 30 * k, yy / h * 150 + 20, (xx + yy) / (h + w) * 90 + 60], -1)
        base[h // 4:h // 2, w // 3:w // 2] += 60
        frames.append(base + torch.randn(h, w, 3, generator=g) * 12)
    return torch.stack(frames).clamp(0, 255).round().to(torch.uint8)


def dark(clip):
    """Levels 0..~110: statistics that the fill value (128) of the padding would change."""
    return (clip.float() * 0.42).round().to(torch.uint8)


def padded_batch(clips):
    """(B, T, 3, H, W) float canvas with every clip top-left, the rest at FILL, and its Region."""
    h = max(c.shape[1] for c in clips) + 5
    w = max(c.shape[2] for c in clips) + 3
    x = torch.full((len(clips), clips[0].shape[0], 3, h, w), FILL)
    for b, c in enumerate(clips):
        x[b, :, :, :c.shape[1], :c.shape[2]] = c.permute(0, 3, 1, 2).float()
    sizes = torch.tensor([[c.shape[1], c.shape[2]] for c in clips])
    return x, Region(sizes[:, 0], sizes[:, 1], x.shape)


# ------------------------------------------------------------------------------------------------ op by op
@pytest.mark.parametrize("name", OPS)
def test_each_op_in_a_padded_batch_equals_the_cpu_op(name):
    """Device path: three clips of different sizes on one canvas, each with its own magnitude and sign; CPU
    path: ``RandAugment`` on each clip alone. Same output within uint8 rounding."""
    ra = RandAugment()
    clips = [natural_clip(3, 40, 52, 1), dark(natural_clip(3, 33, 61, 2)), natural_clip(3, 48, 48, 3)]
    params = [(7.3, 1.0), (4.1, -1.0), (9.6, 1.0)]
    x, region = padded_batch(clips)
    out = apply_plans(x, [[(name, m, s)] for m, s in params], region)
    for b, (clip, (m, s)) in enumerate(zip(clips, params)):
        alone = ra.apply(clip.permute(0, 3, 1, 2).float(), name, m, s).round().clamp(0, 255)
        got = out[b, :, :, :clip.shape[1], :clip.shape[2]]
        diff = (got - alone).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 2e-3, (name, b, float(diff.max()))
        assert b or not torch.equal(alone, clip.permute(0, 3, 1, 2).float()) or name == "AutoContrast"
    # the padding stays at the fill value (what geometric ops sample outside a clip)
    assert torch.all(out[1, :, :, clips[1].shape[1]:, :] == FILL)


def _pil(frame: np.ndarray, name: str, m: float, s: float) -> np.ndarray:
    """timm's op (PIL) on one frame."""
    img, level = Image.fromarray(frame), m / 10
    if name == "AutoContrast":
        out = ImageOps.autocontrast(img)
    elif name == "Equalize":
        out = ImageOps.equalize(img)
    elif name == "Invert":
        out = ImageOps.invert(img)
    elif name == "Posterize":
        out = ImageOps.posterize(img, 4 - int(level * 4))
    elif name == "Solarize":
        out = ImageOps.solarize(img, 256 - int(level * 256))
    elif name == "SolarizeAdd":
        add = int(level * 110)
        out = img.point([min(255, i + add) if i < 128 else i for i in range(256)] * 3)
    else:
        enhancer = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
                    "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}[name]
        out = enhancer(img).enhance(max(0.1, 1 + s * level * 0.9))
    return np.asarray(out)


@pytest.mark.parametrize("name", [op for op in OPS if op not in
                                  ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")])
def test_each_pixel_op_on_the_device_matches_pil(name):
    """The reference the CPU RandAugment follows (timm applies PIL ops): the device op, in a padded batch, is
    within uint8 rounding of PIL on each frame (PIL truncates where we round: 1 level; Color converts to grey
    and back: 2)."""
    clips = [natural_clip(2, 37, 45, 4), dark(natural_clip(2, 30, 50, 5))]
    params = [(6.2, 1.0), (8.8, -1.0)]
    x, region = padded_batch(clips)
    out = apply_plans(x, [[(name, m, s)] for m, s in params], region)
    for b, (clip, (m, s)) in enumerate(zip(clips, params)):
        got = out[b, :, :, :clip.shape[1], :clip.shape[2]].permute(0, 2, 3, 1).numpy()
        ref = np.stack([_pil(f, name, m, s) for f in clip.numpy()]).astype(np.float32)
        diff = np.abs(got - ref)
        assert diff.max() <= (2 if name == "Color" else 1), (name, b, diff.max())
        assert (diff > 0).mean() < 0.5


def test_geometric_ops_move_pixels_as_pil_does():
    """Translate by a whole number of pixels is exact; rotation turns about the clip's own centre, also when the
    clip sits in a larger canvas."""
    clip = natural_clip(1, 20, 40, 6)
    x, region = padded_batch([clip, natural_clip(1, 31, 47, 7)])
    out = apply_plans(x, [[("TranslateXRel", 10 / (0.45 * 40) * 4, 1.0)], []], region)   # 4 px to the left
    src = clip.permute(0, 3, 1, 2).float()
    assert torch.allclose(out[0, :, :, :20, :36], src[..., 4:], atol=1e-3)
    assert torch.all(out[0, :, :, :20, 36:40] == FILL)
    bar = torch.zeros(1, 1, 3, 21, 31)
    bar[..., 10, 16:] = 255                                     # to the right of the centre (15.5, 10.5)
    canvas = torch.full((1, 1, 3, 40, 50), FILL)
    canvas[..., :21, :31] = bar
    reg = Region(torch.tensor([21]), torch.tensor([31]), canvas.shape)
    up = apply_plans(canvas, [[("Rotate", 10.0, 1.0)] * 3], reg)    # 3 x 30 degrees counter-clockwise
    assert up[0, 0, 0, 1:5, 15].mean() > 150 and up[0, 0, 0, 10, 17:31].mean() < 200


def test_crop_resize_resizes_each_box_alone():
    g = gen(0)
    x = torch.rand(3, 2, 3, 50, 70, generator=g) * 255
    boxes = [(3, 5, 40, 33), (0, 0, 50, 70), (10, 20, 7, 9)]   # down-, down-, up-sampling
    out = crop_resize(x, boxes, 24)
    for b, (y, x0, h, w) in enumerate(boxes):   # edges clamped to the box: as if the crop were the image
        ref = F.interpolate(x[b, :, :, y:y + h, x0:x0 + w].clone(), size=(24, 24), mode="bilinear",
                            align_corners=False)
        assert torch.allclose(out[b], ref, atol=1e-4), b
    same = crop_resize(x, [(1, 2, 24, 24)] * 3, 24)            # no resize: an exact copy
    assert torch.equal(same, x[..., 1:25, 2:26])


# ------------------------------------------------------------------------------------------------ whole transform
@pytest.mark.parametrize("rand_augment,flip,scale", [("rand-m9-n4-mstd0.5-inc1", True, (0.08, 1.0)),
                                                     (None, False, (1.0, 1.0))])
def test_train_augment_equals_the_cpu_transform_for_the_same_draws(rand_augment, flip, scale):
    kw = dict(crop_size=32, flip=flip, rand_augment=rand_augment, scale=scale)
    cpu = build_transform("train", **kw)
    dev = TrainAugment(**kw)
    clips = [natural_clip(3, 40, 56, 11), natural_clip(3, 48, 36, 12), natural_clip(3, 44, 44, 13)]
    batch = collate_clips([{"video": c, "label": i, "index": i} for i, c in enumerate(clips)])
    for seed in range(6):
        gens = [gen(100 * seed + b) for b in range(3)]
        draws = [dev.draw(copy_of(g), *c.shape[1:3]) for g, c in zip(gens, clips)]
        out = dev.apply(batch["video"], batch["size"].tolist(), draws)
        assert out.shape == (3, 3, 3, 32, 32) and out.dtype == torch.float32
        for b, (g, c) in enumerate(zip(gens, clips)):
            ref = cpu(c, generator=copy_of(g))
            diff = (out[b] - ref).abs()
            assert diff.max() <= LEVEL + 1e-4 and diff.mean() < 0.02 * LEVEL, (seed, b, float(diff.max()))


def test_results_do_not_depend_on_the_batch_around_a_clip():
    aug = TrainAugment(crop_size=24, rand_augment="rand-m9-n4-mstd0.5-inc1", seed=3)
    a, big = natural_clip(2, 30, 40, 21), natural_clip(2, 64, 80, 22)
    alone = aug(collate_clips([{"video": a, "label": 0, "index": 5}]), epoch=1)[0]
    for other in range(4):
        items = [{"video": big, "label": 1, "index": 9 + other}, {"video": a, "label": 0, "index": 5}]
        mixed = aug(collate_clips(items), epoch=1)[0][1]
        assert (mixed - alone[0]).abs().max() <= LEVEL + 1e-4


def test_keyed_on_seed_epoch_index_and_repeat():
    aug = TrainAugment(crop_size=16, rand_augment="rand-m9-n4-mstd0.5-inc1", repeats=2, seed=1)
    items = [{"video": natural_clip(2, 24, 30, 30 + i), "label": i, "index": i} for i in range(3)]
    x, y = aug(collate_clips(items), epoch=0)
    assert x.shape == (6, 3, 2, 16, 16) and y.tolist() == [0, 0, 1, 1, 2, 2]
    again, _ = aug(collate_clips(items), epoch=0)
    assert torch.equal(x, again)
    assert not torch.equal(x[0], x[1])                                  # two different augmentations
    later, _ = aug(collate_clips(items), epoch=1)
    assert not torch.equal(x, later)
    first_two, _ = aug(collate_clips(items[:2]), epoch=0)               # rows keyed on the index, not the position
    assert torch.equal(first_two, x[:4])
    assert augment_generator(1, 0, 2, 1).initial_seed() != sample_generator(1, 0, 2).initial_seed()


@pytest.mark.parametrize("epoch,box", [(3, None), (5, (0, 8, 6, 14))])   # a mixup batch, a CutMix batch
def test_mixup_on_the_device_is_keyed_on_the_batch(epoch, box):
    mix = Mixup(3, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)
    aug = TrainAugment(crop_size=16, flip=False, mixup=mix, seed=2)
    items = [{"video": natural_clip(2, 20, 20, 40 + i), "label": i % 3, "index": 7 + i} for i in range(4)]
    x, y = aug(collate_clips(items), epoch=epoch)
    assert y.shape == (4, 3) and torch.allclose(y.sum(1), torch.ones(4))
    x2, y2 = aug(collate_clips(items), epoch=epoch)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    # by hand: the batch without mixup, clip b mixed with clip 3 - b with the draw keyed on (seed, epoch, index 7)
    plain, labels = TrainAugment(crop_size=16, flip=False, seed=2)(collate_clips(items), epoch=epoch)
    assert labels.tolist() == [0, 1, 2, 0]
    g = mixup_generator(2, epoch, 7)
    lam, cut = mix.sample(g)
    assert cut == (box is not None) and lam < 1
    if cut:
        assert mix.cut_box(16, 16, lam, g) == box
        y0, y1, x0, x1 = box
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert torch.equal(x[..., inside], plain.flip(0)[..., inside])
        assert torch.equal(x[..., ~inside], plain[..., ~inside])
        lam = 1 - (y1 - y0) * (x1 - x0) / 256                     # the area actually cut
    else:
        assert torch.allclose(x, plain * lam + plain.flip(0) * (1 - lam), atol=1e-5)
    on, off = 1 - 0.1 + 0.1 / 3, 0.1 / 3                          # smoothing 0.1 over 3 classes
    assert y[1].tolist() == pytest.approx([off, lam * on + (1 - lam) * off, lam * off + (1 - lam) * on], abs=1e-5)
    assert y[2].tolist() == pytest.approx([off, lam * off + (1 - lam) * on, lam * on + (1 - lam) * off], abs=1e-5)
    assert y[0].tolist() == pytest.approx([on, off, off], abs=1e-6)    # mixed with a clip of its own class


# ------------------------------------------------------------------------------------------------ distribution
def test_draws_follow_the_cpu_randaugment_distribution():
    """Over many clips the device path's draws (ops, how many run, magnitudes, signs, crop areas and
    aspects, flips) have the CPU transform's distribution."""
    spec, n = "rand-m7-n4-mstd0.5-inc1", 3000
    aug = TrainAugment(crop_size=32, rand_augment=spec, seed=0)
    ra = RandAugment.from_string(spec)
    dev = aug.draws(range(n), [(256, 340)] * n, epoch=0)
    cpu = []
    for i in range(n):   # the CPU transform's order of draws, from the dataset's generators
        g = sample_generator(1, 0, i)
        plan = ra.sample(g)
        from uniformerv2.data.transforms import random_resized_crop_box
        box = random_resized_crop_box(256, 340, generator=g)
        cpu.append((plan, box, float(torch.rand((), generator=g)) < 0.5))

    def stats(plans, boxes, flips):
        ops = [op for p in plans for op, _, _ in p]
        mags = np.array([m for p in plans for _, m, _ in p])
        signs = np.array([s for p in plans for _, _, s in p])
        area = np.array([h * w / (256 * 340) for _, _, h, w in boxes])
        aspect = np.array([math.log(w / h) for _, _, h, w in boxes])
        return ({op: ops.count(op) / len(ops) for op in OPS}, np.mean([len(p) for p in plans]), mags.mean(),
                mags.std(), (signs > 0).mean(), area.mean(), aspect.std(), np.mean(flips))

    d = stats([x.plan for x in dev], [x.box for x in dev], [x.flip for x in dev])
    c = stats(*zip(*cpu))
    for op in OPS:   # each op ~1/15 of the applied ones: within 4 standard errors of each other
        se = math.sqrt(2 * (1 / 15) * (14 / 15) / 6000)
        assert abs(d[0][op] - c[0][op]) < 4 * se, op
    assert abs(d[1] - c[1]) < 0.1 and abs(d[1] - 2.0) < 0.1     # 4 ops at p = 0.5
    assert abs(d[2] - c[2]) < 0.05 and abs(d[2] - 7.0) < 0.05   # magnitude ~ N(7, 0.5)
    assert abs(d[3] - c[3]) < 0.05 and abs(d[3] - 0.5) < 0.05
    assert abs(d[4] - c[4]) < 0.05 and abs(d[4] - 0.5) < 0.05
    assert abs(d[5] - c[5]) < 0.02 and abs(d[6] - c[6]) < 0.02 and abs(d[7] - c[7]) < 0.05
    assert [x.plan for x in dev[:50]] != [p for p, _, _ in cpu[:50]]   # a stream of its own


# ------------------------------------------------------------------------------------------------ workers
def test_collate_clips_places_clips_on_one_canvas_and_drops_failures():
    a, b = natural_clip(2, 20, 30, 50), natural_clip(2, 25, 17, 51)
    items = [{"video": a, "label": 1, "index": 4, "path": "a.mp4"},
             {"error": "bad", "path": "x.mp4", "index": 5, "label": 0},
             {"video": b, "label": 0, "index": 6, "path": "b.mp4"}]
    with pytest.warns(RuntimeWarning):
        out = collate_clips(items)
    assert out["video"].shape == (2, 2, 25, 30, 3) and out["video"].dtype == torch.uint8   # the largest clip
    assert out["size"].tolist() == [[20, 30], [25, 17]] and out["index"].tolist() == [4, 6]
    assert torch.equal(out["video"][1, :, :25, :17], b) and int(out["video"][1, :, 25:].sum()) == 0
    assert out["skipped"] == ["x.mp4"] and out["path"] == ["a.mp4", "b.mp4"]
