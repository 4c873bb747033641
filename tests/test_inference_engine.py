"""The one inference engine: a video gets the same probabilities, bit for bit at one thread, from ``predict``
alone, from ``predict_many`` among other videos with 2 input workers and from the evaluation of a labelled
list that holds it; the views per forward pass and the default input workers are chosen from the work."""
import numpy as np
import pytest
import torch

from uniformerv2 import VideoClassifier, create_model
from uniformerv2.engine.data import labelled_items
from uniformerv2.engine.evaluate import evaluate_videos
from uniformerv2.inference.engine import Engine, view_flops
from videogen import write_video
from weightfiles import saved_noisy_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("engine")
    model = saved_noisy_model(d / "tiny", seed=3, scale=0.1)
    videos = [write_video(d / f"v{i}.mp4", 18 + 7 * i, width=64 + 8 * (i % 3), height=48, fps=10) for i in range(5)]
    return model, [str(v) for v in videos], d


@pytest.fixture
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("views", [None, "2x3"])
def test_predict_predict_many_and_eval_give_the_same_bits(setup, one_thread, views):
    model_dir, videos, d = setup
    clf = VideoClassifier.from_pretrained(model_dir, device="cpu")
    target = videos[2]
    alone = clf.predict(target, views=views)
    many = list(clf.predict_many(videos, views=views, workers=2))
    assert many[2].path == target
    assert np.array_equal(many[2].probs, alone.probs) and np.array_equal(many[2].view_probs, alone.view_probs)

    names = clf.labels
    (d / "list.csv").write_text("".join(f"{v},{names[i]}\n" for i, v in enumerate(videos)))
    items, how = labelled_items(d / "list.csv", model_labels=clf.model.labels)
    assert how == "class names" and [it.label for it in items] == list(range(5))
    res = evaluate_videos(clf, items, views=views, workers=2)
    row = [p["video"] for p in res["predictions"]].index(target)
    assert np.array_equal(res["scores"][row].numpy(), alone.probs)
    assert res["predictions"][row]["top5_scores"][0] == pytest.approx(float(alone.probs.max()), abs=1e-6)
    # the other videos of the list got their own numbers, not the target's
    assert not np.array_equal(res["scores"][0].numpy(), alone.probs)


def test_views_per_pass_from_the_model_never_from_the_call():
    tiny = Engine(create_model("tiny_k400_8x64").eval(), torch.device("cpu"), torch.float32, None)
    b16 = Engine(create_model("k400_b16_8x224").eval(), torch.device("cpu"), torch.float32, None)
    assert view_flops(b16.model.cfg) > 100 * view_flops(tiny.model.cfg)
    # a tiny model batches views of several videos; B/16 runs one video's views per pass, unpadded
    assert [tiny.views_per_pass(v) for v in (1, 3, 12)] == [8, 6, 12]
    assert [b16.views_per_pass(v) for v in (1, 3, 12)] == [1, 3, 12]
    tiny.memory_cap = 1
    assert tiny.views_per_pass(3) == 1          # memory first: a video's views then take several passes


def test_default_workers_follow_decode_against_model_cost():
    """One video: decode in the model's process. Many videos: a tiny model waits for decoding (every core
    decodes, the model takes one thread); B/16 is the bottleneck (its threads keep every core)."""
    tiny = VideoClassifier(create_model("tiny_k400_8x64"), device="cpu")
    b16 = VideoClassifier(create_model("k400_b16_8x224"), device="cpu")
    for clf in (tiny, b16):
        assert clf.engine.choose_workers(clf.view_spec(), 1, cores=2) == 0
    assert tiny.engine.choose_workers(tiny.view_spec(), 64, cores=2) == 2
    assert tiny.engine.choose_workers(tiny.view_spec(), 64, cores=8) == 8
    assert b16.engine.choose_workers(b16.view_spec(), 64, cores=2) == 0
    assert b16.engine.choose_workers(b16.view_spec("1x1"), 64, cores=2) == 0


def test_a_lists_class_indices_are_mapped_to_the_models_classes_by_name(setup, tmp_path):
    """A list written in another class order than the model's (synth's order against a fine-tuned model's
    sorted folder names): read through the labels file beside it, refused without one, taken as they are only
    when the user says they are in the model's order."""
    _, videos, _ = setup
    model_labels = ["growing", "moving left", "moving right", "shrinking"]
    list_order = ["moving left", "moving right", "growing", "shrinking"]
    (tmp_path / "test.csv").write_text("".join(f"{v},{i % 4}\n" for i, v in enumerate(videos)))
    with pytest.raises(Exception, match="labels.txt") as e:
        labelled_items(tmp_path / "test.csv", model_labels=model_labels)
    assert type(e.value).__name__ == "UserError"
    (tmp_path / "labels.txt").write_text("\n".join(list_order) + "\n")
    items, how = labelled_items(tmp_path / "test.csv", model_labels=model_labels)
    assert [model_labels[it.label] for it in items] == [list_order[i % 4] for i in range(5)]
    assert "mapped to the model's classes by name" in how
    same, _ = labelled_items(tmp_path / "test.csv", model_labels=model_labels, list_labels="model")
    assert [it.label for it in same] == [i % 4 for i in range(5)]
    (tmp_path / "labels.txt").write_text("moving left\nmoving right\njumping\nshrinking\n")
    with pytest.raises(Exception, match="'jumping'"):
        labelled_items(tmp_path / "test.csv", model_labels=model_labels)
    # a model without class names: indices are its own
    plain, how = labelled_items(tmp_path / "test.csv", model_labels=None)
    assert [it.label for it in plain] == [i % 4 for i in range(5)] and "names no classes" in how
