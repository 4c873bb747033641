"""``uniformerv2 lists``: each dataset's official annotation files (small ones, written here in the official
formats, with planted duplicates, leaks, missing and undecodable videos and malformed rows) plus generated
videos, to the list files the recipes read; checked line by line and count by count."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from uniformerv2.data.lists import read_video_list
from uniformerv2.data.official import LABEL_LISTS, build_lists
from uniformerv2.errors import UserError
from uniformerv2.labels import canonical_name, kinetics710_map, load_labels
from videogen import write_video

ROOT = Path(__file__).resolve().parents[1]
K_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "uniformerv2", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def lines(path):
    return Path(path).read_text().splitlines()


def video(path, frames=8):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames, width=32, height=24, fps=8)


def broken(path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00not a video" * 100)
    return path


def kcsv(path, rows, header=K_HEADER):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def k400(name):
    return load_labels("kinetics400_uniformerv2_order").index(name)


# ------------------------------------------------------------------------------------------ Kinetics-400
@pytest.fixture(scope="module")
def kinetics(tmp_path_factory):
    d = tmp_path_factory.mktemp("k400")
    v = d / "videos"
    for yid in ("aaaaaaaaaaa", "bbbbbbbbbbb", "eeeeeeeeeee", "vvvvvvvvvvv", "wwwwwwwwwww"):
        video(v / f"{yid}_000010_000020.mp4")
    video(v / "abseiling" / "ccccccccccc.mkv")          # <id>.<ext> in a class folder
    broken(v / "ddddddddddd_000001_000011.mp4")          # undecodable
    ann = d / "kinetics400"
    kcsv(ann / "train.csv", [
        "abseiling,aaaaaaaaaaa,10,20,train,0",
        "air drumming,bbbbbbbbbbb,10,20,train,0",
        "abseiling,aaaaaaaaaaa,10,20,train,0",          # duplicate
        "abseiling,ccccccccccc,3,13,train,0",
        "zumba,ddddddddddd,1,11,train,0",                # undecodable
        "zumba,mmmmmmmmmmm,1,11,train,0",                # missing
        "balloon blowing,vvvvvvvvvvv,10,20,train,0",     # also in validate: left out of train
    ])
    kcsv(ann / "validate.csv", [
        "balloon blowing,vvvvvvvvvvv,10,20,val,0",
        "yoga,wwwwwwwwwww,10,20,val,0",
    ])
    kcsv(ann / "test.csv", ["eeeeeeeeeee,10,20,test"], header="youtube_id,time_start,time_end,split\n")
    return d


def test_kinetics400_lists_labels_and_report(kinetics, tmp_path):
    v, ann = kinetics / "videos", kinetics / "kinetics400"
    out = tmp_path / "lists"
    # files given in any order: the split comes from the split column
    report = build_lists("kinetics400", [ann / "validate.csv", ann / "test.csv", ann / "train.csv"], v, out)
    a = os.path.abspath
    assert lines(out / "train.csv") == [
        f"{a(v / 'aaaaaaaaaaa_000010_000020.mp4')},{k400('abseiling')}",
        f"{a(v / 'bbbbbbbbbbb_000010_000020.mp4')},{k400('air drumming')}",
        f"{a(v / 'abseiling' / 'ccccccccccc.mkv')},{k400('abseiling')}",
        f"{a(v / 'ddddddddddd_000001_000011.mp4')},{k400('zumba')}",     # not checked: the file exists
    ]
    assert lines(out / "val.csv") == [f"{a(v / 'vvvvvvvvvvv_000010_000020.mp4')},{k400('balloon blowing')}",
                                      f"{a(v / 'wwwwwwwwwww_000010_000020.mp4')},{k400('yoga')}"]
    assert lines(out / "test.csv") == lines(out / "val.csv")           # no labelled test split
    assert lines(out / "labels.txt") == load_labels("kinetics400_uniformerv2_order")
    assert k400("abseiling") != 0 and lines(out / "labels.txt")[0] == "riding a bike"   # the official heads' order
    assert lines(out / "missing.txt") == ["train,mmmmmmmmmmm,mmmmmmmmmmm_000001_000011.mp4"]
    assert report == json.loads((out / "report.json").read_text())
    assert report["rows_read"] == 10 and report["bad_rows"] == 0 and report["duplicates"] == 1
    assert report["videos_found"] == 6 and report["missing"] == 1 and report["undecodable"] == 0
    assert report["splits"]["train"] == {"entries": 5, "found": 4, "missing": 1, "undecodable": 0, "written": 4}
    assert report["dropped"] == {"duplicate": 1, "in a validation or test set": 1, "missing video": 1,
                                 "unlabelled test row": 1}
    assert report["test_list"] == "val"
    # the written lists read back with the model's class names
    items = read_video_list(out / "train.csv", root=str(out), labels=out / "labels.txt")
    assert [i.label for i in items] == [k400("abseiling"), k400("air drumming"), k400("abseiling"), k400("zumba")]


def test_kinetics400_check_skip_bad_through_the_cli(kinetics, tmp_path):
    ann = kinetics / "kinetics400"
    bad = kcsv(tmp_path / "kinetics400" / "train.csv",
               lines(ann / "train.csv")[1:] + ["abseiling,xxxxxxxxxxx,10", "yoga,yyyyyyyyyyy,a,b,train,0"])
    r = cli("lists", "kinetics400", bad, ann / "validate.csv", "--videos", kinetics / "videos", "-o",
            tmp_path / "out", "--check", "--skip-bad", "--workers", "0", "--quiet")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["bad_rows"] == 2 and report["rows_read"] == 11
    assert report["bad_row_messages"][0].startswith(f"{bad}:9: expected 6 fields")
    assert report["undecodable"] == 1 and report["undecodable_videos"][0]["path"].endswith("ddddddddddd_000001_000011.mp4")
    assert report["splits"]["train"]["written"] == 3 and len(lines(tmp_path / "out" / "train.csv")) == 3
    assert report["dropped"]["malformed row"] == 2 and report["dropped"]["undecodable video"] == 1
    assert "kinetics400: 11 rows read, 6 videos found, 1 missing, 1 undecodable" in r.stdout
    # without --skip-bad: one line naming file and line, nothing written
    r = cli("lists", "kinetics400", bad, "--videos", kinetics / "videos", "-o", tmp_path / "stop")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"{bad}:9: expected 6 fields" in r.stderr and not (tmp_path / "stop").exists()


def test_wrong_dataset_and_unknown_class_are_refused_in_one_line(kinetics, tmp_path):
    v = kinetics / "videos"
    k700 = kcsv(tmp_path / "kinetics700" / "train.csv", ["abseiling,aaaaaaaaaaa,10,20,train,0"])
    with pytest.raises(UserError, match="a Kinetics-700 annotation file .* not Kinetics-400"):
        build_lists("kinetics400", [k700], v, tmp_path / "o")
    ssv2 = tmp_path / "something-something-v2-train.json"
    ssv2.write_text(json.dumps([{"id": "1", "template": "Holding [something]"}]))
    with pytest.raises(UserError, match="not a Kinetics annotation CSV"):
        build_lists("kinetics400", [ssv2], v, tmp_path / "o")
    with pytest.raises(UserError, match="a Kinetics annotation file, not Moments in Time"):
        build_lists("mit", [kinetics / "kinetics400" / "train.csv"], v, tmp_path / "o")
    with pytest.raises(UserError, match="not a Something-Something V2 annotation file"):
        build_lists("sthv2", [kinetics / "kinetics400" / "train.csv"], v, tmp_path / "o")
    odd = kcsv(tmp_path / "kinetics400" / "validate.csv", ["abseiling,aaaaaaaaaaa,10,20,val,0",
                                                           "juggling kittens,bbbbbbbbbbb,1,2,val,0"])
    with pytest.raises(UserError, match=rf"{odd}:3: class 'juggling kittens' is not a Kinetics-400 class"):
        build_lists("kinetics400", [odd], v, tmp_path / "o")
    r = cli("lists", "kinetics400", k700, "--videos", v, "-o", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------ Kinetics-710
def test_kinetics710_union_rule_leaks_and_class_indices_by_name(tmp_path):
    k4, k6, k7 = (load_labels(f"kinetics{v}") for v in (400, 600, 700))
    only600 = next(n for n in k6 if canonical_name(n) not in {canonical_name(x) for x in k4})
    only700 = next(n for n in k7 if canonical_name(n) not in {canonical_name(x) for x in k6})
    ann, vids = tmp_path / "ann", tmp_path / "videos"
    ids = {c: c * 11 for c in "ABCDEFGHVW"}
    for c, yid in ids.items():     # the K400 videos in one folder, the others in a second one
        video((vids / ("k400" if c in "AD" else "later")) / f"{yid}_000000_000010.mp4")
    row = lambda name, c, split: f'"{name}",{ids[c]},0,10,{split},0'   # noqa: E731
    files = [
        kcsv(ann / "kinetics400" / "train.csv", [row("abseiling", "A", "train"), row("balloon blowing", "D", "train"),
                                                 row("yoga", "G", "train")]),
        kcsv(ann / "kinetics400" / "validate.csv", [row("yoga", "V", "val")]),
        kcsv(ann / "kinetics400" / "test.csv", [f"{ids['C']},0,10,test"], header="youtube_id,time_start,time_end,split\n"),
        kcsv(ann / "kinetics600" / "train.csv", [row("abseiling", "A", "train"),        # the same video as K400's
                                                 row("yoga", "B", "train"), row(only600, "F", "train")]),
        kcsv(ann / "kinetics600" / "validate.csv", [row("zumba", "W", "val")]),
        kcsv(ann / "kinetics700" / "train.csv", [row("abseiling", "C", "train"),        # in K400's test set
                                                 row(only700, "E", "train"), row("yoga", "H", "train"),
                                                 row("zumba", "W", "train")]),            # in K600's val set
        kcsv(ann / "kinetics700" / "validate.csv", [row("yoga", "B", "val"),            # in K600's train set
                                                    row("zumba", "W", "val")]),          # in K600's val set too
    ]
    out = tmp_path / "k710"
    report = build_lists("kinetics710", files[::-1], [vids / "k400", vids / "later"], out)
    order = [canonical_name(n) for n in load_labels("kinetics710_uniformerv2_order")]
    k710 = load_labels("kinetics710")

    def idx(name, version):   # through the K710 channel map, then by name into the written order
        own = [canonical_name(n) for n in load_labels(f"kinetics{version}")].index(canonical_name(name))
        return order.index(canonical_name(k710[kinetics710_map(version)[own]]))

    train = [line.rsplit(",", 1) for line in lines(out / "train.csv")]
    assert [(Path(p).name[:11], int(label)) for p, label in train] == [
        (ids["A"], idx("abseiling", 400)), (ids["D"], idx("balloon blowing", 400)), (ids["G"], idx("yoga", 400)),
        (ids["F"], idx(only600, 600)), (ids["E"], idx(only700, 700)), (ids["H"], idx("yoga", 700))]
    assert idx("balloon blowing", 400) == order.index("inflating balloons")
    assert idx(only700, 700) == order.index(canonical_name(only700)) >= 400
    held_out = {ids[c] for c in "BCVW"}
    assert not held_out & {Path(p).name[:11] for p, _ in train}
    val = [line.rsplit(",", 1) for line in lines(out / "val.csv")]
    assert [(Path(p).name[:11], int(label)) for p, label in val] == [
        (ids["V"], idx("yoga", 400)), (ids["W"], idx("zumba", 600)), (ids["B"], idx("yoga", 700))]
    assert report["kinetics710"] == {
        "versions": [400, 600, 700], "train_rows": {"400": 3, "600": 3, "700": 4}, "train_union_before": 10,
        "train_unique": 9, "train_in_val_or_test": 3, "train_after": 6, "label_conflicts": 0, "test_rows": 1,
        "val_rows": 4, "val_unique": 3}
    assert report["duplicates"] == 2 and report["missing"] == 0
    assert lines(out / "labels.txt") == load_labels("kinetics710_uniformerv2_order")
    assert [f["version"] for f in report["annotations"]] == [700, 700, 600, 600, 400, 400, 400]


def test_kinetics710_version_from_classes_when_no_folder_or_name_says_it(tmp_path):
    k6 = {canonical_name(n) for n in load_labels("kinetics600")}
    only700 = next(n for n in load_labels("kinetics700") if canonical_name(n) not in k6)
    later = kcsv(tmp_path / "a" / "train.csv", [f'"{only700}",xxxxxxxxxxx,0,10,train,0'])
    first = kcsv(tmp_path / "b" / "train.csv", ["abseiling,yyyyyyyyyyy,0,10,train,0"])
    (tmp_path / "v").mkdir()
    report = build_lists("kinetics710", [later, first], tmp_path / "v", tmp_path / "out")
    assert [(f["version"], f["version_from"]) for f in report["annotations"]] == [(700, "classes"), (400, "classes")]
    assert lines(tmp_path / "out" / "missing.txt") == ["train,yyyyyyyyyyy,yyyyyyyyyyy_000000_000010.mp4",
                                                       "train,xxxxxxxxxxx,xxxxxxxxxxx_000000_000010.mp4"]
    assert report["kinetics710"]["train_rows"] == {"400": 1, "600": 0, "700": 1}
    assert report["notes"] == ["Kinetics-710 is built from Kinetics-400, 600 and 700; given: 400, 700"]


def test_shipped_k710_maps_agree_with_the_class_names():
    k710 = [canonical_name(n) for n in load_labels("kinetics710")]
    for v in (400, 600, 700):
        names = load_labels(f"kinetics{v}")
        assert [k710[i] for i in kinetics710_map(v)] == [canonical_name(n) for n in names]


# ------------------------------------------------------------------------------------------ Something-Something
def test_something_something_v2(tmp_path):
    names = load_labels("something_something_v2")
    ann, v = tmp_path / "ann", tmp_path / "videos"
    ann.mkdir()
    (ann / "labels.json").write_text(json.dumps({n: str(i) for i, n in enumerate(names[:3])}))
    for vid in ("11", "12", "21"):
        video(v / f"{vid}.mkv" if vid != "12" else v / f"{vid}.mp4")   # found by stem, any video suffix
    t = names[2].replace("something", "[something]")
    (ann / "something-something-v2-train.json").write_text(json.dumps([
        {"id": "11", "label": "x", "template": t, "placeholders": ["x"]},
        {"id": "12", "label": "y", "template": names[0].replace("something", "[something]")},
        {"id": "11", "label": "x", "template": t},                       # duplicate
        {"id": "13", "label": "z", "template": t},                       # missing
        {"label": "no id", "template": t},                               # malformed
    ]))
    (ann / "something-something-v2-validation.json").write_text(json.dumps([{"id": "21", "template": t}]))
    (ann / "something-something-v2-test.json").write_text(json.dumps([{"id": "31"}]))
    out = tmp_path / "out"
    report = build_lists("sthv2", sorted(ann.iterdir()), v, out, skip_bad=True)
    assert lines(out / "train.csv") == [f"{v / '11.mkv'},2", f"{v / '12.mp4'},0"]
    assert lines(out / "val.csv") == [f"{v / '21.mkv'},2"]
    assert lines(out / "missing.txt") == ["train,13,13.webm"]
    assert report["rows_read"] == 7 and report["bad_rows"] == 1 and report["duplicates"] == 1
    assert report["bad_row_messages"] == [f"{ann / 'something-something-v2-train.json'}: entry 5: no video id"]
    assert report["dropped"] == {"duplicate": 1, "malformed row": 1, "missing video": 1, "unlabelled test row": 1}
    bad = ann / "something-something-v2-validation.json"
    bad.write_text(json.dumps([{"id": "21", "template": "Juggling [something]"}]))
    with pytest.raises(UserError, match="class 'Juggling something' is not a Something-Something V2 class"):
        build_lists("sthv2", [bad], v, out)


def test_something_something_v1_frame_folders(tmp_path):
    from PIL import Image

    names = load_labels("something_something_v1")
    ann, v = tmp_path / "ann", tmp_path / "frames"
    ann.mkdir()
    (ann / "something-something-v1-labels.csv").write_text("".join(n + "\n" for n in names))
    for vid, n in (("100", 5), ("200", 7)):
        (v / vid).mkdir(parents=True)
        for k in range(1, n + 1):
            Image.new("RGB", (32, 24), (k * 20, 0, 0)).save(v / vid / f"{k:05d}.jpg")
    (ann / "something-something-v1-train.csv").write_text(f"100;{names[3]}\n300;{names[1]}\nbad line\n")
    (ann / "something-something-v1-validation.csv").write_text(f"200;{names[0]}\n")
    (ann / "something-something-v1-test.csv").write_text("400\n")
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"something-something-v1-train.csv:3: expected 'id;class'"):
        build_lists("sthv1", sorted(ann.iterdir()), v, out)
    report = build_lists("sthv1", sorted(ann.iterdir()), v, out, skip_bad=True, check=True)
    assert lines(out / "train.csv") == [f"{v / '100'},5,3"]
    assert lines(out / "val.csv") == [f"{v / '200'},7,0"]
    assert report["frame_template"] == "{:05d}.jpg" and report["undecodable"] == 0
    assert report["missing"] == 1 and report["bad_rows"] == 1 and report["rows_read"] == 5
    items = read_video_list(out / "train.csv")
    assert items[0].num_frames == 5 and items[0].label == 3


# ------------------------------------------------------------------------------------------ Moments in Time
def test_moments_in_time(tmp_path):
    names = load_labels("moments_in_time")
    ann, v = tmp_path / "ann", tmp_path / "Moments_in_Time_Raw"
    ann.mkdir()
    (ann / "moments_categories.txt").write_text("".join(f"{n},{i}\n" for i, n in enumerate(names)))
    video(v / "training" / names[5] / "a.mp4")
    video(v / "training" / names[7] / "b.mp4")
    video(v / "validation" / names[5] / "c.mp4")
    (ann / "trainingSet.csv").write_text(f"{names[5]}/a.mp4,{names[5]},3,0\n{names[7]}/b.mp4,{names[7]},3,0\n"
                                         f"{names[5]}/a.mp4,{names[5]},3,0\n{names[7]}/gone.mp4,{names[7]},2,1\n")
    (ann / "validationSet.csv").write_text(f"{names[5]}/c.mp4,{names[5]},3,0\nnot a row\n")
    out = tmp_path / "out"
    report = build_lists("mit", list(ann.iterdir()), v, out, skip_bad=True)
    assert lines(out / "train.csv") == [f"{v / 'training' / names[5] / 'a.mp4'},5",
                                        f"{v / 'training' / names[7] / 'b.mp4'},7"]
    assert lines(out / "val.csv") == [f"{v / 'validation' / names[5] / 'c.mp4'},5"]
    assert report["duplicates"] == 1 and report["missing"] == 1 and report["bad_rows"] == 1
    assert report["rows_read"] == 6


# ------------------------------------------------------------------------------------------ ActivityNet / HACS
def _anet_db(names):
    return {"version": "VERSION 1.3", "taxonomy": [], "database": {
        "vid1": {"subset": "training", "duration": 20.0, "url": "", "annotations": [
            {"segment": [2.5, 8.25], "label": names[3]}, {"segment": [10.0, 25.0], "label": names[4]}]},
        "vid2": {"subset": "validation", "duration": 30.0, "annotations": [
            {"segment": [0.0, 5.0], "label": names[1]}, {"segment": [6.0, 20.0], "label": names[2]}]},
        "vid3": {"subset": "testing", "duration": 9.0, "annotations": []},
        "vid4": {"subset": "training", "duration": 12.0, "annotations": [{"segment": [1.0], "label": names[1]},
                                                                           {"segment": [1.0, 3.0], "label": names[1]}]},
    }}


def test_activitynet_segments_and_untrimmed_validation(tmp_path):
    names = load_labels("activitynet")
    v = tmp_path / "videos"
    video(v / "v_vid1.mp4")
    video(v / "v_vid2.mp4")
    ann = tmp_path / "activity_net.v1-3.min.json"
    ann.write_text(json.dumps(_anet_db(names)))
    out = tmp_path / "out"
    report = build_lists("activitynet", [ann], v, out, skip_bad=True)
    assert lines(out / "train.csv") == [f"{v / 'v_vid1.mp4'},20,2.5,8.25,3", f"{v / 'v_vid1.mp4'},20,10,20,4"]
    assert lines(out / "val.csv") == [f"{v / 'v_vid2.mp4'},2"]      # the class covering most of the video
    assert lines(out / "missing.txt") == ["train,vid4|1|3|1,v_vid4.mp4"]
    assert report["bad_rows"] == 1 and report["dropped"]["unlabelled test video"] == 1
    items = read_video_list(out / "train.csv")
    assert (items[0].total_time, items[0].start, items[0].end, items[0].label) == (20.0, 2.5, 8.25, 3)
    with pytest.raises(UserError, match="a HACS annotation file, not ActivityNet"):
        build_lists("activitynet", [ann.rename(tmp_path / "HACS_segments_v1.1.1.json")], v, out)


def test_hacs_positive_clips_and_segment_validation(tmp_path):
    from uniformerv2.data.decode import probe

    names = load_labels("activitynet")
    v = tmp_path / "videos"
    video(v / "v_yt1.mp4", frames=16)
    video(v / "v_vid2.mp4")
    clips = tmp_path / "HACS_clips_v1.1.1.csv"
    clips.write_text("classname,youtube_id,subset,start,end,label\n"
                     f"{names[7]},yt1,training,0.5,1.5,1\n"
                     f"{names[7]},yt1,training,0.0,1.0,-1\n"
                     f"{names[7]},yt1,training,0.5,1.5,1\n"
                     f"{names[7]},yt9,training,0.0,1.0,1\n"
                     f"{names[7]},yt1,testing,0.0,1.0,1\n"
                     f"{names[7]},yt1,training,zero,1.0,1\n")
    seg = tmp_path / "HACS_segments_v1.1.1.json"
    db = _anet_db(names)
    del db["database"]["vid4"]
    seg.write_text(json.dumps(db))
    out = tmp_path / "out"
    with pytest.raises(UserError, match=rf"{clips}:7: start / end / label are not numbers"):
        build_lists("hacs", [seg, clips], v, out)
    report = build_lists("hacs", [seg, clips], v, out, skip_bad=True)
    total = probe(v / "v_yt1.mp4", exact=False).duration
    assert lines(out / "train.csv") == [f"{v / 'v_yt1.mp4'},{round(total, 3):g},0.5,1.5,7"]
    assert lines(out / "val.csv") == [f"{v / 'v_vid2.mp4'},2"]
    assert report["dropped"]["negative clip"] == 1 and report["dropped"]["test clip"] == 1
    assert report["duplicates"] == 1 and report["missing"] == 1
    with pytest.raises(UserError, match="an ActivityNet annotation file, not HACS"):
        build_lists("hacs", [seg.rename(tmp_path / "activity_net.v1-3.min.json")], v, out)


# ------------------------------------------------------------------------------------------ the recipes
def test_every_recipe_reads_the_files_lists_writes_in_its_class_order():
    from uniformerv2.engine.config import load_config, shipped_configs
    from uniformerv2.model.presets import PRESETS

    dataset = {"k400": "kinetics400", "k600": "kinetics600", "k700": "kinetics700", "k710": "kinetics710",
               "ssv2": "sthv2", "sthv1": "sthv1", "mit": "mit", "anet": "activitynet", "hacs": "hacs"}
    seen = set()
    for name in shipped_configs():
        prefix = name.split("_")[0]
        if prefix not in dataset:
            continue
        cfg = load_config(name)
        assert (cfg["data"]["train"], cfg["data"]["val"], cfg["data"]["test"]) == ("train.csv", "val.csv", "test.csv")
        assert PRESETS[cfg["model"]["preset"]].labels == LABEL_LISTS[dataset[prefix]], name
        if prefix == "sthv1":
            assert cfg["data"]["frame_template"] == "{:05d}.jpg"
        seen.add(prefix)
    assert seen == set(dataset)


def test_lists_then_train_a_shipped_recipe_on_a_mini_kinetics(tmp_path):
    ann, v = tmp_path / "kinetics400", tmp_path / "videos"
    classes = ["abseiling", "yoga"]
    train = []
    for i in range(4):
        yid = f"trainvid{i:03d}"
        video(v / f"{yid}_000000_000002.mp4", frames=12)
        train.append(f"{classes[i % 2]},{yid},0,2,train,0")
    video(v / "valvideo000_000000_000002.mp4", frames=12)
    kcsv(ann / "train.csv", train)
    kcsv(ann / "validate.csv", ["yoga,valvideo000,0,2,val,0"])
    # as docs/data.md writes it: relative paths, from a folder that holds a "kinetics400" folder
    r = cli("lists", "kinetics400", "kinetics400/train.csv", "kinetics400/validate.csv", "--videos", "videos",
            "-o", "lists", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = cli("train", "--config", "k400_b16_8x224_clip", "--output", tmp_path / "run", f"data.root={tmp_path / 'lists'}",
            "model.preset=tiny_k400_8x64", "train.batch_size=2", "train.max_steps=1",
            "train.epochs=1", "train.warmup_epochs=0", "train.device=cpu", "train.progress=false",
            "data.num_workers=0", "eval.batch_size=1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 training videos" in r.stdout
    assert (tmp_path / "run" / "final").is_dir()
