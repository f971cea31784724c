"""The HTML report in a real headless Chromium: opens from file://, plots render, nothing is fetched."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipeline import report
from tests.test_report import _argv, _write_inputs

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLOTS = ["revenue-churn", "cohort-logo", "cohort-revenue", "drift", "backtest"]

pytestmark = pytest.mark.browser


def _chromium() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("Chromium not installed (apt-get install -y chromium)")
    return path


def test_report_renders_offline_in_chromium(tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    paths = _write_inputs(tmp_path, with_history=True)
    report.main(_argv(tmp_path, paths["validated"], paths["params"]))
    html = (tmp_path / "reports" / "report.html").resolve()

    requests: list[str] = []
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda req: requests.append(req.url))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(html.as_uri(), wait_until="load")
            assert "Retention and model monitoring" in page.title() + page.inner_text("h1")
            for name in PLOTS:
                svg = page.locator(f'figure[data-plot="{name}"] svg')
                assert svg.count() == 1, name
                box = svg.bounding_box()
                assert box is not None and box["width"] > 200 and box["height"] > 100, (name, box)
                assert page.locator(f'figure[data-plot="{name}"] svg path').count() > 5, name
            # heat maps carry their pixels inline; the image must have decoded to a real size
            for name in ("cohort-logo", "cohort-revenue"):
                widths = page.eval_on_selector_all(
                    f'figure[data-plot="{name}"] svg image', "els => els.map(e => e.getBBox().width)"
                )
                assert widths and max(widths) > 50, (name, widths)  # the heat map (and its colour bar)
            if os.environ.get("CHURNGUARD_REPORT_SCREENSHOT"):
                page.screenshot(path=os.environ["CHURNGUARD_REPORT_SCREENSHOT"], full_page=True)
            assert page.locator("#by-month tr").count() > 10
            assert page.locator("#backtest tr").count() > 2
        finally:
            browser.close()
    external = [u for u in requests if not u.startswith(("file://", "data:"))]
    assert external == [], external
    assert requests[0] == html.as_uri()
    assert errors == [], errors
