import numpy as np
import pytest
import torch

from uniformerv2.data.sampling import (dense_indices, sliding_windows, sparse_indices, uniform_indices,
                                       window_indices)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_official_test_formula_known_values():
    # V=300, T=8: seg = 37.375, segment starts round(seg*i) = 0 37 75 112 150 187 224 262
    assert sparse_indices(300, 8, split="val").tolist() == [18, 55, 93, 130, 168, 205, 242, 280]
    # K=4 clips: offsets int(37.375/5*(k+1)) = 7, 14, 22, 29
    assert sparse_indices(300, 8, clip=0, num_clips=4).tolist() == [7, 44, 82, 119, 157, 194, 231, 269]
    assert sparse_indices(300, 8, clip=3, num_clips=4).tolist() == [29, 66, 104, 141, 179, 216, 253, 291]


def test_rounding_is_half_to_even_like_numpy():
    # seg = 1.25: round(2.5) = 2 (half-up would give 3)
    assert sparse_indices(6, 4, split="val").tolist() == [0, 1, 2, 4]
    assert [int(np.round(1.25 * i)) for i in range(4)] == [0, 1, 2, 4]


def test_val_is_test_with_one_clip():
    for v in (5, 17, 64, 301):
        assert sparse_indices(v, 8, split="val").tolist() == sparse_indices(v, 8, split="test").tolist()


def test_train_ranges_are_inclusive_segments():
    # V=6, T=4: segments [0,1] [1,2] [2,4] [4,5]
    seen = [set() for _ in range(4)]
    g = gen()
    for _ in range(400):
        for i, f in enumerate(sparse_indices(6, 4, split="train", generator=g)):
            seen[i].add(int(f))
    assert seen == [{0, 1}, {1, 2}, {2, 3, 4}, {4, 5}]


def test_train_is_reproducible_from_generator():
    a = sparse_indices(300, 16, split="train", generator=gen(5))
    b = sparse_indices(300, 16, split="train", generator=gen(5))
    c = sparse_indices(300, 16, split="train", generator=gen(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("v", [1, 2, 3, 7, 8, 9, 100, 1001])
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_properties(v, split):
    idx = sparse_indices(v, 8, split=split, generator=gen(v))
    assert idx.shape == (8,) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() <= v - 1
    assert np.all(np.diff(idx) >= 0)


def test_short_videos_repeat_frames():
    assert sparse_indices(3, 8, split="val").tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert sparse_indices(1, 4, split="train", generator=gen()).tolist() == [0, 0, 0, 0]


def test_start_index_for_one_based_folders():
    assert sparse_indices(300, 8, split="val", start_index=1).tolist() == [19, 56, 94, 131, 169, 206, 243, 281]


def test_dense():
    assert dense_indices(100, 4, 8, split="val").tolist() == [37, 45, 53, 61]  # room 75, start 75 // 2
    assert dense_indices(100, 4, 8, clip=0, num_clips=3).tolist() == [0, 8, 16, 24]
    assert dense_indices(100, 4, 8, clip=2, num_clips=3).tolist() == [75, 83, 91, 99]
    assert dense_indices(10, 4, 8, split="val").tolist() == [0, 8, 9, 9]   # clamped past the end
    t = dense_indices(100, 4, 8, split="train", generator=gen())
    assert np.all(np.diff(t) == 8) and 0 <= t[0] <= 75


def test_uniform():
    assert uniform_indices(100, 4).tolist() == [12, 37, 62, 87]
    assert uniform_indices(2, 4).tolist() == [0, 0, 1, 1]


def test_sliding_windows_seconds_and_frames():
    w = sliding_windows(300, 30.0, window=4, stride=2)
    assert [(s, e) for s, e, *_ in w] == [(0, 120), (60, 180), (120, 240), (180, 300)]
    assert w[1][2:] == (2.0, 6.0)
    w = sliding_windows(100, 25.0, window=40, stride=30, unit="frames")
    assert [(s, e) for s, e, *_ in w] == [(0, 40), (30, 70), (60, 100)]
    assert sliding_windows(50, 25.0, window=4, stride=2) == [(0, 50, 0.0, 2.0)]


def test_window_indices_offsets_inside_window():
    assert window_indices(100, 400, 8, split="val").tolist() == [118, 155, 193, 230, 268, 305, 342, 380]


def test_bad_arguments():
    with pytest.raises(ValueError):
        sparse_indices(0, 8)
    with pytest.raises(ValueError):
        sparse_indices(10, 8, split="training")
    with pytest.raises(ValueError):
        sparse_indices(10, 8, clip=4, num_clips=4)
