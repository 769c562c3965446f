"""The Dagster UI as a user sees it: a real webserver on loopback, read in headless Chromium (Debian's)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from green_pipeline.app.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.browser]
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
#: Without the background-networking flags Chromium keeps calling Google's hosts, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ui_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A webserver over an instance where the CLI (its ``main``, in this process) processed a small stream."""
    root = tmp_path_factory.mktemp("ui")
    env = {**os.environ, "DAGSTER_HOME": str(root / ".dagster")}
    (root / ".dagster").mkdir()
    shutil.copyfile(REPO / "dagster.yaml", root / ".dagster" / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        for args in (
            ["generate", "--out", "data", "--days", "3", "--rows-per-day", "3000", "--covariate-shift-day", "2"],
            ["run", "--data", "data", "--store", "store", "--label", "churned", "--artifacts", "artifacts"],
        ):
            assert main(args) == 0, args
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-m", "green_pipeline.app.definitions"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "dagster-webserver did not start"
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium; run it through make.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1400, "height": 1600})
        browser.close()


def _open(page: Page, url: str) -> None:
    page.goto(url, wait_until="networkidle")
    skip = page.get_by_role("button", name="Skip")  # Dagster's one-time community dialog
    if skip.count():
        skip.click()


def test_retrained_model_page_shows_strategy_and_energy(ui_url: str, page: Page, tmp_path: Path) -> None:
    _open(page, f"{ui_url}/assets/retrained_model")
    for key in ("strategy", "energy_kwh", "emissions_kg_co2eq", "carbon_intensity_g_per_kwh", "energy_method"):
        expect(page.get_by_text(key, exact=True).first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("warm_start").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "retrained_model.png"), full_page=True)


def test_energy_ledger_page_shows_totals_and_the_chart(ui_url: str, page: Page, tmp_path: Path) -> None:
    _open(page, f"{ui_url}/assets/energy_ledger")
    for key in ("total_energy_kwh", "avoided_energy_kwh", "energy_per_1k_predictions_kwh", "energy_kwh"):
        expect(page.get_by_text(key, exact=True).first).to_be_visible(timeout=30_000)
    chart_row = page.locator("tr").filter(has=page.get_by_text("chart", exact=True)).filter(has_text="Show Markdown")
    chart_row.get_by_text("[Show Markdown]").click()
    chart = page.locator('img[src^="data:image/png"]')
    expect(chart).to_be_visible(timeout=15_000)
    assert chart.evaluate("image => image.complete && image.naturalWidth") > 300
    page.wait_for_timeout(500)  # let the dialog finish fading in before the screenshot
    page.screenshot(path=str(tmp_path / "energy_ledger_chart.png"))
