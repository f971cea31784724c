"""The CS page in a real headless Chromium against a real uvicorn process on 127.0.0.1:
sign in, the list loads, filter, open an account (reasons, playbook, trend), download the CSV."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.serving_fakes import API_KEY, READ, Company, scored_company

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{CHROMIUM} is missing on CI: apt-get install -y chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium); required on CI")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> Company:
    return scored_company(tmp_path_factory.mktemp("browser") / "co", n_accounts=40)


@pytest.fixture(scope="module")
def server(company: Company) -> Iterator[str]:
    _require_chromium()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.serving_fakes", "--company", str(company.root), "--port", str(port)],
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cs_page_end_to_end(server: str, company: Company, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    latest = pd.read_parquet(company.scores / "latest.parquet")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(accept_downloads=True).new_page()
            page.goto(f"{server}/")
            assert page.url.endswith("/login")  # no session: sent to the sign-in form
            page.fill("input[name=key]", "wrong")
            page.click("#login button[type=submit]")
            assert "not valid" in page.inner_text("main")
            page.fill("input[name=key]", API_KEY)
            page.click("#login button[type=submit]")
            page.wait_for_selector("#at-risk")

            # loads: every active account, ranked by expected ARR lost
            assert int(page.inner_text("#total")) == len(latest)
            shown = page.locator("#at-risk tbody tr[data-account]").evaluate_all(
                "rows => rows.map(r => r.dataset.account)"
            )
            assert shown == latest["account_id"].tolist()[: len(shown)]
            assert "ARR (EUR)" in page.inner_text("#at-risk thead")  # the fake company's currency

            # filters: tier and segment
            page.select_option("select[name=tier]", "high")
            page.select_option("select[name=segment]", "smb")
            page.click("#filters button[type=submit]")
            page.wait_for_load_state()
            want = latest[(latest["risk_tier"] == "high") & (latest["segment"] == "smb")]
            assert int(page.inner_text("#total")) == len(want) > 0
            shown = page.locator("#at-risk tbody tr[data-account]").evaluate_all(
                "rows => rows.map(r => r.dataset.account)"
            )
            assert shown == want["account_id"].tolist()
            api = httpx.get(f"{server}/v1/at-risk?tier=high&segment=smb", headers=READ).json()
            assert api["total"] == len(want)

            # CSV of the current view
            with page.expect_download() as dl:
                page.click("#csv")
            path = tmp_path / "view.csv"
            dl.value.save_as(path)
            with path.open(encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            assert [r["account_id"] for r in rows] == want["account_id"].tolist()
            assert {r["risk_tier"] for r in rows} == {"high"}
            assert {r["currency"] for r in rows} == {"EUR"}

            # open an account: reasons with playbook actions, and the risk trend chart
            first = want.iloc[0]
            page.click(f"tr[data-account='{first['account_id']}'] a.account-link")
            page.wait_for_selector("#reasons")
            assert first["name"] in page.inner_text("#account-name")
            assert page.inner_text("#risk") == f"{first['risk'] * 100:.0f}%"
            assert "ARR / EXPECTED LOSS (EUR)" in page.inner_text("section.cards").upper()
            reasons = page.locator("#reasons li .reason").all_inner_texts()
            assert reasons and reasons[0] == first["reason_1"]
            assert first["action_1"] in page.inner_text("#reasons")
            assert page.locator("#trend circle").count() == 3  # three scoring runs in the history

            # the session cookie is out of reach of scripts; log out ends it
            assert page.evaluate("document.cookie") == ""
            page.click("form.logout button[type=submit]")
            page.wait_for_url("**/login")
            page.goto(f"{server}/")
            assert page.url.endswith("/login")
        finally:
            browser.close()


def test_page_and_export_need_a_session(server: str) -> None:
    for path in ("/", "/export.csv", "/accounts/acc-001"):
        r = httpx.get(f"{server}{path}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
