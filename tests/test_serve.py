"""``uniformerv2 serve`` over real HTTP: a real server process on 127.0.0.1, a saved tiny model, generated clips.

The answers are ``uniformerv2 predict --json``'s (same classes, probabilities within 1e-5), do not depend on what
they were batched with (the same bits alone and among 16 concurrent requests that share forward passes), and
every error status of the service is produced by a real request: 401, 403, 404, 413, 415, 422, 503 with
Retry-After, 504 (the work dropped), a client that goes away (its work dropped), a decode worker that dies (its
request fails, the next one is served by a new worker). Uploads leave no file behind."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from serving import need_service, running_server
from videogen import write_video
from weightfiles import saved_noisy_model

need_service()
import httpx  # noqa: E402 - after the check that it is installed

SHARED_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "videos" / "test.mp4"
KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIMEOUT_S = 4.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    model = saved_noisy_model(d / "tiny", seed=5, scale=0.1)
    allowed = d / "allowed"
    allowed.mkdir()
    clips = [write_video(allowed / f"c{i}.mp4", 16 + 5 * i, width=64 + 16 * (i % 3), height=48, fps=8)
             for i in range(6)]
    long_clip = write_video(allowed / "long.mp4", 60, width=72, height=56, fps=10)
    (d / "secret.mp4").write_bytes(clips[0].read_bytes())
    if SHARED_CLIP.is_file():
        shutil.copyfile(SHARED_CLIP, allowed / "real.mp4")
    tmp = d / "tmp"
    tmp.mkdir()
    with running_server(model, "--workers", "1", "--max-upload-mb", "1", "--timeout", str(TIMEOUT_S),
                        "--queue", "20", "--max-wait-ms", "150", "--allow-paths", str(allowed),
                        env={"UNIFORMERV2_API_KEY": KEY, "TMPDIR": str(tmp)}) as (base, proc):
        yield {"base": base, "proc": proc, "model": model, "clips": clips, "long": long_clip, "dir": d, "tmp": tmp}


def post(setup, path="/v1/predict", *, body=None, ctype="video/mp4", params=None, headers=AUTH, timeout=30.0,
         **kw):
    h = dict(headers or {})
    if body is not None:
        h["content-type"] = ctype
        kw["content"] = body
    return httpx.post(setup["base"] + path, params=params, headers=h, timeout=timeout, **kw)


def metric(setup, name: str) -> float:
    text = httpx.get(setup["base"] + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def predict_json(model, paths):
    out = subprocess.run([sys.executable, "-m", "uniformerv2", "predict", *map(str, paths), "--model", str(model),
                          "--json", "--quiet"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def same_prediction(served: dict, ref: dict, tol: float = 1e-5) -> None:
    assert served["ok"] is True and set(served) == set(ref)
    assert [s["label"] for s in served["top_k"]] == [s["label"] for s in ref["top_k"]]
    for a, b in zip(served["top_k"], ref["top_k"]):
        assert abs(a["prob"] - b["prob"]) <= tol and a["index"] == b["index"]
    for wa, wb in zip(served.get("timeline", []), ref.get("timeline", [])):
        assert (wa["start"], wa["end"]) == (wb["start"], wb["end"])
        assert [s["label"] for s in wa["top_k"]] == [s["label"] for s in wb["top_k"]]
        assert max(abs(x["prob"] - y["prob"]) for x, y in zip(wa["top_k"], wb["top_k"])) <= tol


def wait_for(cond, seconds: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stopped_worker(setup):
    """The decode worker's pid, stopped (SIGSTOP): whatever it is given waits."""
    pids = httpx.get(setup["base"] + "/readyz", timeout=5).json()["decode_workers"]
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGSTOP)
    return pids[0]


def no_uploads_left(setup):
    folders = [p for p in setup["tmp"].iterdir() if p.name.startswith("uniformerv2-serve-")]
    assert len(folders) == 1 and oct(folders[0].stat().st_mode & 0o777) == "0o700"
    wait_for(lambda: not any(folders[0].iterdir()), 5, "the uploads to be deleted")


# ----------------------------------------------------------------------------------------------- answers
def test_predict_matches_predict_json_alone_and_among_16_concurrent_requests(setup):
    clips, long_clip = setup["clips"], setup["long"]
    real = [SHARED_CLIP] if SHARED_CLIP.is_file() else []     # a real camera clip, where the checkout has it
    ref = predict_json(setup["model"], clips + real)
    from uniformerv2 import VideoClassifier   # the same numbers as predict --json (tests/test_inference_engine.py)

    clf = VideoClassifier.from_pretrained(setup["model"], device="cpu")
    ref_long = clf.predict(long_clip, window=2, stride=1.5).to_dict()

    alone = post(setup, files={"video": (clips[0].name, clips[0].read_bytes(), "video/mp4")})
    assert alone.status_code == 200, alone.text
    assert alone.json()["path"] == "c0.mp4"
    same_prediction(alone.json(), ref[0])
    for expected in ref[len(clips):]:      # over the upload limit: named, under --allow-paths
        same_prediction(post(setup, json={"path": "real.mp4"}).json(), expected)
        # 20 windows: sent by the decode worker in several chunks, each when the model thread has room
        served = post(setup, json={"path": "real.mp4", "window": 0.5}).json()
        assert len(served["timeline"]) == 20
        same_prediction(served, clf.predict(SHARED_CLIP, window=0.5).to_dict())
    windows = post(setup, body=long_clip.read_bytes(), params={"window": 2, "stride": 1.5})
    assert windows.status_code == 200, windows.text
    assert len(windows.json()["timeline"]) == len(ref_long["timeline"]) >= 4
    same_prediction(windows.json(), ref_long)

    passes, views = metric(setup, "uniformerv2_forward_passes_total"), metric(setup, "uniformerv2_views_total")
    jobs = [i % len(clips) for i in range(16)]

    def one(i):
        clip = clips[i]
        if i % 2:   # raw body and multipart both
            return post(setup, body=clip.read_bytes())
        return post(setup, files={"video": (clip.name, clip.read_bytes(), "application/octet-stream")})

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, jobs))
    assert [a.status_code for a in answers] == [200] * 16
    for i, a in zip(jobs, answers):
        same_prediction(a.json(), ref[i])
    # views of several requests shared forward passes, and a clip's answer did not change with its pass mates
    new_passes = metric(setup, "uniformerv2_forward_passes_total") - passes
    assert metric(setup, "uniformerv2_views_total") - views == 16
    assert new_passes < 16
    assert answers[0].json()["top_k"] == alone.json()["top_k"]
    no_uploads_left(setup)


def test_features_model_health_metrics_and_openapi(setup):
    clip = setup["clips"][1]
    f = post(setup, "/v1/features", body=clip.read_bytes())
    assert f.status_code == 200, f.text
    assert f.json()["dim"] == len(f.json()["features"]) == 64
    fw = post(setup, "/v1/features", body=setup["long"].read_bytes(), params={"window": 3})
    assert len(fw.json()["windows"]) == len(fw.json()["features"]) == 2
    info = httpx.get(setup["base"] + "/v1/model", headers=AUTH).json()
    assert info["preset"] == "tiny_k400_8x64" and info["num_classes"] == 400 == len(info["classes"])
    assert (info["frames"], info["input_size"], info["views"]) == (8, 64, "1x1")
    assert httpx.get(setup["base"] + "/healthz").json() == {"ok": True}
    assert httpx.get(setup["base"] + "/readyz").json()["ready"] is True
    spec = httpx.get(setup["base"] + "/openapi.json").json()
    assert {"/v1/predict", "/v1/features", "/v1/model", "/v1/explain", "/metrics"} <= set(spec["paths"])
    text = httpx.get(setup["base"] + "/metrics").text
    for name in ("uniformerv2_requests_total{", "uniformerv2_request_seconds_bucket{", "uniformerv2_batch_views_bucket{",
                 "uniformerv2_queue_depth ", "uniformerv2_videos_per_second "):
        assert name in text
    assert 'uniformerv2_requests_total{endpoint="features",outcome="ok"} 2' in text
    page = httpx.get(setup["base"] + "/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert httpx.get(setup["base"] + "/static/app.js").status_code == 200


def test_explain_returns_the_profile_and_an_overlay(setup):
    """``POST /v1/explain``: the explanation's summary (``VideoClassifier.explain(...).to_json()``: the class
    explained is the top-1 of predict, a profile over the sampled frames) and a PNG overlay; no server path."""
    import base64

    clip = setup["clips"][2]
    top1 = post(setup, body=clip.read_bytes()).json()["top_k"][0]
    r = post(setup, "/v1/explain", files={"video": (clip.name, clip.read_bytes(), "video/mp4")}, timeout=60)
    assert r.status_code == 200, r.text
    e = r.json()["explanation"]
    assert e["class"]["index"] == top1["index"] and abs(e["class"]["prob"] - top1["prob"]) <= 1e-5
    assert e["path"] == clip.name and len(e["windows"]) == 1
    assert len(e["profile"]) == 8 and abs(sum(f["attention"] for f in e["profile"]) - 1) < 1e-4
    assert base64.b64decode(r.json()["overlay_png_base64"])[:8] == b"\x89PNG\r\n\x1a\n"
    other = post(setup, "/v1/explain", body=clip.read_bytes(), params={"target": 3}).json()["explanation"]
    assert other["class"]["index"] == 3
    assert post(setup, "/v1/explain", body=clip.read_bytes(), params={"target": "x"}).status_code == 422
    no_uploads_left(setup)


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_requests_get_their_status_and_one_line_reason(setup):
    clip = setup["clips"][0]
    data = clip.read_bytes()
    r = post(setup, body=data, headers={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert post(setup, body=data, headers={"Authorization": "Bearer wrong"}).status_code == 401

    r = post(setup, body=data[: len(data) // 2])                       # truncated: the index is at the end
    assert r.status_code == 422 and "cannot open video" in r.json()["error"]
    assert "\n" not in r.json()["error"] and str(setup["tmp"]) not in r.json()["error"]
    r = post(setup, files={"video": ("noise.mp4", os.urandom(5000), "video/mp4")})
    assert r.status_code == 422 and r.json()["error"].startswith("noise.mp4: ")
    r = post(setup, body=data, params={"views": "5x2"})
    assert r.status_code == 422 and "CLIPSxCROPS" in r.json()["error"]
    assert post(setup, body=data, params={"colour": "red"}).status_code == 422
    assert post(setup, body=b"").status_code == 422

    big = os.urandom(int(1.2 * 2**20))
    r = post(setup, body=big)
    assert r.status_code == 413 and "1 MB" in r.json()["error"]
    assert post(setup, files={"video": ("big.mp4", big, "video/mp4")}).status_code == 413

    assert post(setup, body=data, ctype="image/png").status_code == 415
    assert post(setup, files={"video": ("notes.txt", b"hello", "text/plain")}).status_code == 415

    # server-side paths: only under --allow-paths
    ok = post(setup, json={"path": "c2.mp4", "top_k": 3}, headers=AUTH)
    assert ok.status_code == 200 and len(ok.json()["top_k"]) == 3 and ok.json()["path"] == "c2.mp4"
    assert post(setup, json={"path": "../secret.mp4"}).status_code == 403
    assert post(setup, json={"path": str(setup["dir"] / "secret.mp4")}).status_code == 403
    assert post(setup, json={"path": "missing.mp4"}).status_code == 404
    no_uploads_left(setup)


# ----------------------------------------------------------------------------------------------- overload
def test_queue_full_is_503_and_timeouts_are_504_with_their_work_dropped(setup):
    data = setup["clips"][3].read_bytes()
    videos = metric(setup, "uniformerv2_videos_total")
    pid = stopped_worker(setup)
    try:
        with ThreadPoolExecutor(20) as pool:
            stuck = [pool.submit(post, setup, body=data) for _ in range(20)]
            wait_for(lambda: metric(setup, "uniformerv2_queue_depth") == 20, 10, "20 requests admitted")
            full = post(setup, body=data)
            assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
            assert "busy" in full.json()["error"]
            answers = [f.result() for f in stuck]
        assert [a.status_code for a in answers] == [504] * 20
        assert "time limit" in answers[0].json()["error"]
        assert metric(setup, "uniformerv2_queue_depth") == 0
    finally:
        os.kill(pid, signal.SIGCONT)
    # the worker finishes the video it held; nothing of the 20 requests goes through the model
    time.sleep(1.0)
    assert metric(setup, "uniformerv2_videos_total") == videos
    assert metric(setup, "uniformerv2_decode_waiting") == 0
    assert post(setup, body=data).status_code == 200
    no_uploads_left(setup)


def test_a_client_that_goes_away_cancels_its_work(setup):
    data = setup["clips"][4].read_bytes()
    before = metric(setup, 'uniformerv2_requests_total{endpoint="predict",outcome="cancelled"}') \
        if "cancelled" in httpx.get(setup["base"] + "/metrics").text else 0
    pid = stopped_worker(setup)
    try:
        waiting = threading.Thread(target=lambda: post(setup, body=data, timeout=60))   # the worker's job
        waiting.start()
        wait_for(lambda: metric(setup, "uniformerv2_decoding") == 1, 10, "a job in the worker")
        with pytest.raises(httpx.ReadTimeout):
            post(setup, body=data, timeout=0.5)                        # queued behind it, then gone
        wait_for(lambda: metric(setup, 'uniformerv2_requests_total{endpoint="predict",outcome="cancelled"}')
                 == before + 1, TIMEOUT_S - 1, "the request to be cancelled")
        assert metric(setup, "uniformerv2_decode_waiting") == 0        # taken out of the decode queue
    finally:
        os.kill(pid, signal.SIGCONT)
        waiting.join()
    no_uploads_left(setup)


def test_a_dying_decode_worker_fails_only_its_request_and_is_replaced(setup):
    data = setup["clips"][5].read_bytes()
    pid = stopped_worker(setup)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=post(setup, body=data)))
    t.start()
    wait_for(lambda: metric(setup, "uniformerv2_decoding") == 1, 10, "a job in the worker")
    os.kill(pid, signal.SIGKILL)
    t.join()
    r = result["r"]
    assert r.status_code == 500 and "decoding process died (signal 9)" in r.json()["error"]
    wait_for(lambda: httpx.get(setup["base"] + "/readyz").json()["decode_workers"] != [pid], 10, "a new worker")
    ok = post(setup, body=data)
    assert ok.status_code == 200, ok.text
    assert metric(setup, "uniformerv2_decode_workers_replaced_total") == 1
    assert setup["proc"].poll() is None
    no_uploads_left(setup)
