import math

import numpy as np
import pytest
import torch

from uniformerv2.data.mixup import Mixup, one_hot_smooth
from uniformerv2.data.randaugment import OPS, RandAugment
from uniformerv2.data.transforms import (DeviceAugment, build_transform, crop_offsets, normalize,
                                         random_resized_crop_box, short_side_size)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def column_clip(t=4, h=256, w=340):
    """uint8 (T, H, W, 3) whose value is the column index mod 256 (red), the frame index (green)."""
    x = torch.zeros(t, h, w, 3, dtype=torch.uint8)
    x[..., 0] = (torch.arange(w) % 256).to(torch.uint8)
    x[..., 1] = torch.arange(t, dtype=torch.uint8).view(t, 1, 1)
    return x


def test_crop_offsets_and_short_side():
    assert [crop_offsets(256, 340, 224, p) for p in (0, 1, 2)] == [(16, 0), (16, 58), (16, 116)]
    assert [crop_offsets(340, 256, 224, p) for p in (0, 1, 2)] == [(0, 16), (58, 16), (116, 16)]
    assert short_side_size(256, 340, 224) == (224, 297)
    assert short_side_size(340, 256, 224) == (297, 224)


def test_normalisation_numbers():
    out = normalize(torch.tensor([0.0, 114.75, 255.0]).view(1, 3, 1, 1)).flatten()   # one pixel per channel
    assert out.tolist() == pytest.approx([-2.0, 0.0, (1 - 0.45) / 0.225], abs=1e-5)


def test_test_transform_three_crops_layout_and_values():
    clip = column_clip(h=224, w=300)                      # already short side 224: no resize
    views = build_transform("test", crop_size=224, num_crops=3, mean=(0, 0, 0), std=(1 / 255,) * 3)(clip)
    assert views.shape == (3, 3, 4, 224, 224)             # (crops, 3, T, H, W)
    # red channel = column index: left crop starts at x=0, centre at ceil(76/2)=38, right at 76
    assert [int(views[c, 0, 0, 0, 0]) for c in range(3)] == [0, 38, 76]
    assert views[0, 1, :, 0, 0].tolist() == [0, 1, 2, 3]  # green = frame index, time kept in order
    one = build_transform("val", crop_size=224)(clip)
    assert one.shape == (3, 4, 224, 224)
    assert float(one[0, 0, 0, 0]) == pytest.approx((38 / 255 - 0.45) / 0.225, abs=1e-5)


def np_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(..., H, W) -> (..., out_h, out_w): bilinear, half-pixel centres, edges clamped, no antialias, in float64."""
    def taps(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0
    y0, y1, fy = taps(img.shape[-2], out_h)
    x0, x1, fx = taps(img.shape[-1], out_w)
    img = img.astype(np.float64)
    rows = img[..., y0, :] * (1 - fy)[:, None] + img[..., y1, :] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


def random_clip(t, h, w, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8))


def test_val_resizes_short_side_and_crops_the_centre():
    clip = random_clip(2, 100, 150)
    out = build_transform("val", crop_size=112, output="uint8")(clip)
    assert out.shape == (3, 2, 112, 112) and out.dtype == torch.uint8
    # by hand: short side 100 -> 112 (150 -> floor(168)), centre crop at x = ceil(56 / 2) = 28
    ref = np_bilinear(clip.numpy().transpose(3, 0, 1, 2), 112, 168)[..., :, 28:140]
    diff = np.abs(out.numpy().astype(np.float64) - np.round(ref))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99      # 1: a rounding tie decided the other way
    tall = build_transform("val", crop_size=112, output="uint8")(random_clip(1, 150, 100, seed=1))
    ref = np_bilinear(random_clip(1, 150, 100, seed=1).numpy().transpose(3, 0, 1, 2), 168, 112)[..., 28:140, :]
    assert np.abs(tall.numpy() - np.round(ref)).max() <= 1


def test_random_resized_crop_box_ranges():
    g = gen()
    for _ in range(300):
        y, x, ch, cw = random_resized_crop_box(256, 340, generator=g)
        assert 0 <= y and y + ch <= 256 and 0 <= x and x + cw <= 340
        assert 0.08 * 256 * 340 * 0.9 <= ch * cw <= 256 * 340
        assert 3 / 4 * 0.9 <= cw / ch <= 4 / 3 * 1.1
    # impossible requests fall back to the largest centred box with a clamped aspect
    assert random_resized_crop_box(100, 400, scale=(2, 2), generator=g) == (0, 133, 100, 133)


def test_flip_switch_and_frequency():
    clip = column_clip(t=2, h=64, w=64)
    kw = dict(crop_size=64, scale=(1, 1), ratio=(1, 1), output="uint8")
    flips = [int(build_transform("train", flip=True, **kw)(clip, gen(s))[0, 0, 0, 0]) == 63 for s in range(40)]
    assert 10 < sum(flips) < 30
    assert all(int(build_transform("train", flip=False, **kw)(clip, gen(s))[0, 0, 0, 0]) == 0 for s in range(10))


def test_train_transform_shape_and_reproducibility():
    tr = build_transform("train", crop_size=96, rand_augment="rand-m7-n4-mstd0.5-inc1")
    clip = column_clip(t=3, h=120, w=160)
    a, b = tr(clip, gen(3)), tr(clip, gen(3))
    assert a.shape == (3, 3, 96, 96) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, tr(clip, gen(4)))


def test_train_transform_values_by_hand():
    """Without RandAugment: the random resized crop (drawn first), bilinear to the crop size, the flip (drawn
    next), then the normalisation, computed here with numpy from the same draws."""
    tr = build_transform("train", crop_size=48, rand_augment=None, flip=True)
    clip = random_clip(2, 60, 80, seed=2)
    flips = []
    for seed in range(6):
        g = gen(seed)
        y, x, h, w = random_resized_crop_box(60, 80, generator=g)
        flip = float(torch.rand((), generator=g)) < 0.5
        ref = np_bilinear(clip.numpy()[:, y:y + h, x:x + w].transpose(3, 0, 1, 2), 48, 48)
        ref = (ref[..., ::-1] if flip else ref) / 255
        ref = (ref - 0.45) / 0.225
        assert np.abs(tr(clip, gen(seed)).numpy() - ref).max() < 1e-4, seed
        flips.append(flip)
    assert 0 < sum(flips) < 6


def test_randaugment_parse_and_plan():
    ra = RandAugment.from_string("rand-m7-n4-mstd0.5-inc1")
    assert (ra.magnitude, ra.num_ops, ra.magnitude_std) == (7, 4, 0.5)
    lengths, mags = [], []
    for s in range(300):
        plan = ra.sample(gen(s))
        lengths.append(len(plan))
        mags += [m for _, m, _ in plan]
        assert all(name in OPS for name, _, _ in plan)
    assert 1.6 < sum(lengths) / len(lengths) < 2.4             # 4 ops, each with probability 0.5
    assert 6.8 < sum(mags) / len(mags) < 7.2 and 5 < min(mags) and max(mags) < 9
    with pytest.raises(ValueError):
        RandAugment.from_string("rand-m7-n4-inc0")


def test_randaugment_is_clip_consistent():
    ra = RandAugment.from_string("rand-m9-n4-mstd0.5-inc1")
    frame = torch.randint(0, 256, (1, 3, 40, 50), generator=gen(1), dtype=torch.uint8)
    clip = frame.expand(5, 3, 40, 50).contiguous()
    changed = 0
    for s in range(12):
        out = ra(clip, gen(s))
        assert all(torch.equal(out[0], out[t]) for t in range(1, 5))
        changed += not torch.equal(out, clip)
    assert changed >= 6


def test_randaugment_op_values():
    ra = RandAugment()
    x = torch.tensor([0.0, 50, 100, 200, 255]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    row = lambda name, m=7.0, sign=1.0: ra.apply(x, name, m, sign)[0, 0, 0].round().tolist()
    assert row("Invert") == [255, 205, 155, 55, 0]
    assert row("Posterize") == [0, 0, 64, 192, 192]          # 4 - int(2.8) = 2 bits kept
    assert row("Solarize") == [0, 50, 155, 55, 0]            # threshold 256 - int(179.2) = 77
    assert row("SolarizeAdd") == [77, 127, 177, 200, 255]    # + int(77) below 128
    assert row("Brightness", 5.0) == [0, 72, 145, 290, 370]  # factor 1 + 0.45 (clamped later)
    assert row("AutoContrast") == [0, 50, 100, 200, 255]
    wide = torch.arange(100.0).view(1, 1, 1, 100).expand(1, 3, 4, 100).contiguous()
    out = ra.apply(wide, "TranslateXRel", 2.0, 1.0)         # 0.2 * 0.45 * 100 = 9 px to the left
    assert torch.allclose(out[0, 0, 1, :91], wide[0, 0, 1, 9:], atol=1e-3)
    assert torch.allclose(out[0, 0, 1, 92:], torch.full((8,), 128.0), atol=1e-3)
    # PIL equalize: step = (1000 - 100) // 255 = 3, lut[v] = (step // 2 + pixels below v) // step
    levels = torch.tensor([10.0] * 400 + [20.0] * 300 + [30.0] * 200 + [40.0] * 100).view(1, 1, 10, 100)
    eq = ra.apply(levels.expand(1, 3, 10, 100), "Equalize", 7, 1)
    assert eq[0, 0].unique().tolist() == [0, 133, 233, 255]
    tiny = torch.tensor([10.0, 10, 20, 30]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert torch.equal(ra.apply(tiny, "Equalize", 7, 1), tiny)   # step 0: PIL leaves the image alone


def test_rotate_quarter_turn_about_centre():
    ra = RandAugment()
    img = torch.zeros(1, 3, 21, 21)
    img[..., 10, 15:] = 255                                  # a bar to the right of the centre
    out = ra.apply(img, "Rotate", 10 * 90 / 30 / 3, 1.0)     # level 1 -> 30 degrees; use 90 via three steps
    for _ in range(2):
        out = ra.apply(out, "Rotate", 10 * 90 / 30 / 3, 1.0)
    assert out[0, 0, 2:5, 10].mean() > 150                   # counter-clockwise: the bar now points up
    assert out[0, 0, 10, 16:].mean() < 100


def test_mixup_and_label_smoothing():
    y = one_hot_smooth(torch.tensor([1, 0]), 4, 0.1)
    assert y[0].tolist() == pytest.approx([0.025, 0.925, 0.025, 0.025])
    x = torch.stack([torch.zeros(3, 2, 8, 8), torch.ones(3, 2, 8, 8)])
    mix = Mixup(4, mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0)
    xm, ym = mix(x, torch.tensor([0, 1]), gen(0))
    lam = 1 - float(xm[0].mean())
    assert ym[0].tolist() == pytest.approx([lam, 1 - lam, 0, 0], abs=1e-6)
    cut = Mixup(4, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    for s in range(5):
        xc, yc = cut(x, torch.tensor([0, 1]), gen(s))
        area = float(xc[0, 0, 0].mean())                      # fraction pasted from the other clip
        assert yc[0, 1] == pytest.approx(area, abs=1e-6) and torch.equal(xc[0, :, 0], xc[0, :, 1])


def test_device_augment_matches_normalize():
    batch = torch.randint(0, 256, (2, 3, 4, 8, 8), dtype=torch.uint8)
    ref = normalize(batch.permute(0, 2, 1, 3, 4)).permute(0, 2, 1, 3, 4)
    assert torch.allclose(DeviceAugment()(batch), ref, atol=1e-5)
    flipped = DeviceAugment(flip=True)(batch, gen(0))
    assert all(torch.allclose(f, r, atol=1e-5) or torch.allclose(f, r.flip(-1), atol=1e-5)
               for f, r in zip(flipped, ref))
