"""The interactive report in a real browser: Debian's Chromium + chromium-driver, driven by selenium
(`make test` installs all three). The page is opened from file:// with no network."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from headsteer.artifacts.activations import load_split
from headsteer.sae.topk import TopKSAE

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        pytest.fail(f"{CHROMIUM} / {DRIVER} not found: run `make test`, which installs chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1800"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser, run_dir: Path):
    browser.get((run_dir / "report" / "report.html").resolve().as_uri())
    deadline = time.time() + 10
    while browser.execute_script("return document.body.getAttribute('data-explorer')") != "ready":
        assert time.time() < deadline, "the explorer script did not start"
        time.sleep(0.05)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def _slide(browser, i: int) -> None:
    browser.execute_script(
        "var s = document.getElementById('hs-alpha'); s.value = arguments[0];s.dispatchEvent(new Event('input'));",
        str(i),
    )


def _shown(browser, element_id: str) -> float:
    return float(browser.find_element("id", element_id).get_attribute("data-value"))


def _select(browser, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", element_id)).select_by_value(value)


def test_steering_explorer_shows_results_json(browser, pipeline):
    run = Path(pipeline.out)
    st = json.loads((run / "report" / "results.json").read_text())["steering"]
    _open(browser, run)
    alphas, mode = st["alphas"], st["mode"]
    assert browser.find_element("id", "hs-mode").get_attribute("value") == mode
    for strategy in ("per_class", "global"):
        _select(browser, "hs-strategy", strategy)
        curve = st["curves_by_mode"][mode]["true"][strategy]
        assert browser.find_element("id", "hs-alpha-value").text == "α = 0"  # a new strategy starts at α = 0
        for i in (0, alphas.index(0.0), len(alphas) - 1):
            _slide(browser, i)
            assert browser.find_element("id", "hs-alpha-value").text == f"α = {alphas[i]:g}"
            assert _shown(browser, "hs-acc") == curve["accuracy"][i]
            assert _shown(browser, "hs-usage") == curve["head_usage"][i]
            lo, hi = st["curves"]["true"][strategy]["accuracy_delta_ci"][i]
            assert f"95 % CI {100 * lo:+.2f} to {100 * hi:+.2f}" in browser.find_element("id", "hs-acc-ci").text
    # one class: the sweep's per-class numbers (rounded to 4 decimals in the page)
    sweep = load_file(str(run / "steer" / "sweep.safetensors"))
    axes = json.loads((run / "steer" / "sweep.json").read_text())
    _select(browser, "hs-class", "3")
    _slide(browser, len(alphas) - 1)
    ix = (axes["modes"].index(mode), 0, axes["strategies"].index("global"), len(alphas) - 1, 3)
    assert _shown(browser, "hs-acc") == pytest.approx(sweep["per_class_accuracy"][ix].item(), abs=1e-4)
    cells = browser.find_elements("css selector", "#hs-heads .hcell")
    assert len(cells) == 6
    assert float(cells[0].text.split()[-1]) == pytest.approx(sweep["per_class_head"][ix][0].item(), abs=5e-3)
    _select(browser, "hs-strategy", "threshold")
    _slide(browser, 0)
    assert _shown(browser, "hs-acc") == st["threshold"]["accuracy"][0]
    assert _shown(browser, "hs-usage") == st["threshold"]["head_usage"][0]


def test_latent_browser_opens_a_latent(browser, pipeline):
    run = Path(pipeline.out)
    _open(browser, run)
    _select(browser, "lb-sort", "freq")
    first = browser.find_element("css selector", "#lb-rows tr.lb-row")
    latent = int(first.get_attribute("data-id"))
    first.click()
    lat = load_file(str(run / "steer" / "latents.safetensors"))
    alive = int((lat["freq_overall"] > 0).sum())
    assert f"{alive} latents" in browser.find_element("id", "lb-page").text
    assert latent == int(lat["freq_overall"].argmax())  # sorted by frequency, most frequent first
    assert _shown(browser, "lb-freq") == pytest.approx(lat["freq_overall"][latent].item(), abs=1e-5)
    # its top test images: as many thumbnails as test images it fires on, at most 8 (an independent count)
    sae = TopKSAE.of_run(run, 1).eval()
    with torch.inference_mode():
        fires = int((sae.encode(load_split(run, "test", 1).cls)[:, latent] > 0).sum())
    assert len(browser.find_elements("css selector", "#lb-images .th")) == min(8, fires) > 0
    # the gate readout: the predicted logit push on each head, as latents.safetensors holds it
    push = [float(b.get_attribute("data-value")) for b in browser.find_elements("css selector", "#lb-detail b.push")]
    assert push == pytest.approx(lat["predicted_push"][latent].tolist(), abs=1e-4) and len(push) == 6
    # your set: the opened latent, added twice, is listed once as the config override that sweeps it
    assert browser.find_element("id", "lb-set").text == "'steer.custom_sets={mine: []}'"
    for _ in range(2):
        browser.find_element("id", "lb-add").click()
    assert browser.find_element("id", "lb-set").text == f"'steer.custom_sets={{mine: [{latent}]}}'"
    browser.find_element("id", "lb-clear").click()
    assert browser.find_element("id", "lb-set").text == "'steer.custom_sets={mine: []}'"
    _select(browser, "lb-sort", "lift")
    rows = browser.find_elements("css selector", "#lb-rows tr.lb-row")
    lifts = [float(r.find_elements("tag name", "td")[3].text.split()[0]) for r in rows]
    assert lifts == sorted(lifts, reverse=True)
    browser.save_screenshot(str(run / "report" / "explorer.png"))
    assert (run / "report" / "explorer.png").stat().st_size > 10000


def test_rival_frontier_comes_right_under_the_answer(browser, pipeline):
    """The first figure of the report is the frontier of every rival and strategy, between the answer and the
    first table (the answer's own table aside)."""
    _open(browser, Path(pipeline.out))
    y = browser.execute_script(
        """var a = document.getElementById('answer').getBoundingClientRect().top;
        var f = document.querySelector('img[alt=fig_rivals]').getBoundingClientRect().top;
        var r = document.getElementById('rivals').getBoundingClientRect().top;
        var imgs = Array.from(document.querySelectorAll('img')).map(function (i) { return i.alt; });
        return [a, f, r, imgs.indexOf('fig_rivals')];"""
    )
    answer, figure, rivals_table, index = y
    assert answer < figure < rivals_table and index == 0


def test_per_class_tables_from_beside_the_page(browser, pipeline, tmp_path, monkeypatch):
    """Many classes: the per-class tables go to explorer_classes.js beside report.html (forced here with a
    zero size limit); the page shows the same per-class numbers from there, and without the file it still
    works, its per-class numbers aside."""
    from conftest import PIPELINE_OVERRIDES, ROOT
    from headsteer.analysis import explorer
    from headsteer.config.loader import load_config
    from headsteer.stages import report

    out = tmp_path / "run"
    shutil.copytree(pipeline.out, out, ignore=shutil.ignore_patterns(".lock", "explorer.png"))
    monkeypatch.setattr(explorer, "INLINE_BYTES", 0)
    cfg = load_config(
        ROOT / "configs/smoke.yaml", [f"data.root={pipeline.data.root}", f"out={out}", *PIPELINE_OVERRIDES]
    )
    report.run(cfg, out / "report")
    side = out / "report" / explorer.SIDECAR
    assert side.read_text().startswith("window.HS_CLASS_TABLES = {")
    assert '"class_tables":null' in (out / "report" / "report.html").read_text()
    st = json.loads((out / "report" / "results.json").read_text())["steering"]
    sweep = load_file(str(out / "steer" / "sweep.safetensors"))
    ci = load_file(str(out / "steer" / "per_class.safetensors"))["per_class_ci"]  # (Ls, S, 2, A, C, 2)
    axes = json.loads((out / "steer" / "sweep.json").read_text())
    _open(browser, out)
    _select(browser, "hs-strategy", "global")
    _select(browser, "hs-class", "3")
    last, si = len(st["alphas"]) - 1, axes["strategies"].index("global")
    _slide(browser, last)
    ix = (axes["modes"].index(st["mode"]), 0, si, last, 3)
    assert _shown(browser, "hs-acc") == pytest.approx(sweep["per_class_accuracy"][ix].item(), abs=1e-7)
    assert _shown(browser, "hs-usage") == pytest.approx(sweep["per_class_usage"][ix].item(), abs=1e-7)
    lo, hi = ci[0, si, 0, last, 3].tolist()
    assert f"95 % CI {100 * lo:+.2f} to {100 * hi:+.2f}" in browser.find_element("id", "hs-acc-ci").text
    side.unlink()
    browser.get((out / "report" / "report.html").resolve().as_uri())
    deadline = time.time() + 10
    while browser.execute_script("return document.body.getAttribute('data-explorer')") != "ready":
        assert time.time() < deadline, "the explorer script did not start without its per-class tables"
        time.sleep(0.05)
    assert browser.find_element("id", "hs-class").get_attribute("disabled") == "true"
    assert "explorer_classes.js, which is not beside this page" in browser.find_element("id", "hs-note").text
    assert (
        _shown(browser, "hs-acc")
        == st["curves_by_mode"][st["mode"]]["true"]["per_class"]["accuracy"][st["alphas"].index(0.0)]
    )


def test_docs_site_browses_from_file_urls(browser, docs_site):
    """Every navigation link of the site opens a page from file:// (no folder listing), with no console
    error; the search box, which needs a server, is hidden there."""
    from selenium.webdriver.common.by import By

    browser.get_log("browser")  # drop what earlier tests' pages logged
    browser.get((docs_site / "index.html").as_uri())
    hrefs = {a.get_attribute("href").split("#")[0] for a in browser.find_elements(By.CSS_SELECTOR, "a.md-nav__link")}
    pages = sorted(h for h in hrefs if h.startswith("file://"))
    assert len(pages) == 15 and all(h.endswith(".html") and Path(h[len("file://") :]).is_file() for h in pages), pages
    browser.find_element(By.CSS_SELECTOR, 'a.md-nav__link[href="configs.html"]').click()
    assert browser.current_url == (docs_site / "configs.html").as_uri()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Configs"
    browser.find_element(By.CSS_SELECTOR, 'a.md-nav__link[href="tutorial.html"]').click()
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Tutorial")
    assert browser.execute_script("return document.querySelector('.md-search').hidden") is True
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
