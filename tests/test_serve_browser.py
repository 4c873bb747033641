"""The page of ``uniformerv2 serve`` in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
which ``.ci/run`` installs): upload a real clip, read the rendered top-1 class, the bars and the timeline; an
undecodable file shows the server's one-line reason."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from serving import need, need_service, running_server
from weightfiles import saved_noisy_model

need_service()
import httpx  # noqa: E402 - after the check that it is installed

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHARED_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "videos" / "test.mp4"


@pytest.fixture(scope="module")
def browser():
    need([p for p in (CHROMIUM, DRIVER) if not os.path.exists(p)],
         "the browser test (Debian: apt-get install chromium chromium-driver; .ci/run does it)")
    import importlib.util

    need(["selenium"] if importlib.util.find_spec("selenium") is None else [],
         "the browser test (pip install -e '.[dev]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="uniformerv2-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1200,900"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("page")
    model = saved_noisy_model(d / "tiny", seed=7, scale=0.1)
    with running_server(model, "--workers", "1") as (base, _):
        yield base, d


def _clip(d: Path) -> Path:
    if SHARED_CLIP.is_file():
        return SHARED_CLIP
    from videogen import write_video

    return write_video(d / "clip.mp4", 90, width=96, height=72, fps=10)   # 9 s: long enough for a timeline


def test_the_page_shows_the_top1_class_bars_and_timeline_of_an_uploaded_video(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, d = server
    clip = _clip(d)
    browser.get(base + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: "classes" in b.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(clip))
    wait.until(lambda b: b.find_element(By.ID, "top1").text.strip() != "")
    shown = browser.find_element(By.ID, "top1").text.strip()
    bars = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#bars .label")]

    # what the API says for the same file and the window the page chose (the clip is long: a timeline)
    wait.until(ec.visibility_of_element_located((By.ID, "timeline")))
    duration = browser.execute_script("return document.getElementById('player').duration")
    window = max(1, round(duration / 10))
    with clip.open("rb") as f:
        answer = httpx.post(base + "/v1/predict", params={"top_k": 5, "window": window},
                            files={"video": (clip.name, f, "video/mp4")}, timeout=60).json()
    assert shown == answer["top_k"][0]["label"]
    assert bars == [s["label"] for s in answer["top_k"]]
    assert browser.find_element(By.ID, "error").is_displayed() is False
    legend = browser.find_element(By.ID, "legend").text
    assert answer["top_k"][0]["label"] in legend
    # the explanation's overlay beside the prediction
    wait.until(ec.visibility_of_element_located((By.ID, "explain-box")))
    wait.until(lambda b: b.execute_script("return document.getElementById('overlay').naturalWidth") > 0)


def test_the_page_shows_the_servers_reason_for_a_bad_file(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, d = server
    bad = d / "broken.mp4"
    bad.write_bytes(os.urandom(4000))
    browser.get(base + "/")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: b.find_element(By.ID, "error").is_displayed())
    text = browser.find_element(By.ID, "error").text
    with bad.open("rb") as f:
        expected = httpx.post(base + "/v1/predict", files={"video": (bad.name, f, "video/mp4")}, timeout=60)
    assert expected.status_code == 422
    assert text == expected.json()["error"] and text.startswith("broken.mp4: ")
