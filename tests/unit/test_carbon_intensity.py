"""Intensity providers (packaged CSV, a CSV of yours, an Electricity Maps style HTTP API) and window choice."""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path

import pytest

from green_pipeline.carbon.deferral import (
    DEFERRED,
    DeferralSettings,
    DriftSignal,
    deferral_metadata,
    plan_deferral,
    urgency,
)
from green_pipeline.carbon.intensity import (
    EXAMPLE_PROFILE,
    HOUR,
    CarbonIntensityError,
    CsvIntensityProvider,
    HttpIntensityProvider,
    IntensityPoint,
    cheapest_window,
)

T0 = datetime(2026, 3, 1, 0, tzinfo=UTC)
TOKEN = "secret-token-4242"


def _hourly(*values: float, start: datetime = T0) -> list[IntensityPoint]:
    return [IntensityPoint(start + i * HOUR, start + (i + 1) * HOUR, v) for i, v in enumerate(values)]


def test_the_packaged_profile_is_labelled_an_example_and_repeats_daily() -> None:
    text = files("green_pipeline.carbon").joinpath(EXAMPLE_PROFILE).read_text(encoding="utf-8")
    assert text.startswith("# EXAMPLE carbon-intensity profile -- NOT real or measured grid data.")
    provider = CsvIntensityProvider()
    assert all(zone.startswith("EXAMPLE-") for zone in provider.daily)
    day_one = provider.intensities("EXAMPLE-SOLAR", T0, T0 + 24 * HOUR)
    day_two = provider.intensities("EXAMPLE-SOLAR", T0 + 24 * HOUR, T0 + 48 * HOUR)
    assert len(day_one) == 24 and [p.g_co2_per_kwh for p in day_one] == [p.g_co2_per_kwh for p in day_two]
    assert min(day_one, key=lambda p: p.g_co2_per_kwh).start.hour == 12  # the solar dip at midday UTC


def test_a_csv_profile_with_datetimes_and_its_errors_name_file_and_zone(tmp_path: Path) -> None:
    profile = tmp_path / "grid.csv"
    profile.write_text("# my grid\nzone,hour,g_co2_per_kwh\nDE,2026-03-01T01:00:00Z,300\nDE,2026-03-01T02:00,200\n")
    points = CsvIntensityProvider(str(profile)).intensities("DE", T0, T0 + 4 * HOUR)
    assert [(p.start.hour, p.g_co2_per_kwh) for p in points] == [(1, 300.0), (2, 200.0)]
    with pytest.raises(CarbonIntensityError, match=r"grid\.csv: no zone 'FR'; zones in the file: \['DE'\]"):
        CsvIntensityProvider(str(profile)).intensities("FR", T0, T0 + HOUR)
    profile.write_text("zone,hour,g_co2_per_kwh\nDE,25,300\n")
    with pytest.raises(CarbonIntensityError, match=r"grid\.csv, data row 1 \(zone 'DE'\): hour 25"):
        CsvIntensityProvider(str(profile))
    profile.write_text("zone,hour,intensity\nDE,1,300\n")
    with pytest.raises(CarbonIntensityError, match=r"missing column\(s\) \['g_co2_per_kwh'\]"):
        CsvIntensityProvider(str(profile))
    with pytest.raises(CarbonIntensityError, match=r"absent\.csv: cannot read"):
        CsvIntensityProvider(str(tmp_path / "absent.csv"))


def test_cheapest_window_picks_the_lowest_mean_earliest_on_ties_within_the_deadline() -> None:
    points = _hourly(400, 300, 100, 100, 350, 50)
    # 1 h job, deadline 5:00 -> the 50 at 5:00 is out of reach; 2:00 and 3:00 tie, the earlier wins.
    assert cheapest_window(points, T0, T0 + 5 * HOUR, HOUR).start == T0 + 2 * HOUR
    # A 2 h job: 2:00-4:00 averages 100.
    window = cheapest_window(points, T0 + timedelta(minutes=10), T0 + 5 * HOUR, 2 * HOUR)
    assert (window.start, window.mean_g_co2_per_kwh) == (T0 + 2 * HOUR, 100.0)
    # A 30 min job ending where the cheap hour ends is as good as one starting with it: earliest kept.
    assert cheapest_window(points, T0, T0 + 6 * HOUR, HOUR / 2).start == T0 + 5 * HOUR
    # No time left before the deadline: now.
    now = T0 + timedelta(minutes=30)
    assert cheapest_window(points, now, now + HOUR / 2, HOUR).start == now
    with pytest.raises(CarbonIntensityError, match="no intensity covers"):
        cheapest_window(points, T0 + 10 * HOUR, T0 + 20 * HOUR, HOUR)


def test_only_a_mild_retrain_of_a_deployed_model_may_wait() -> None:
    settings = DeferralSettings("EXAMPLE-SOLAR", timedelta(hours=24), HOUR, urgent_drift_share=0.6, urgent_auc_drop=0.1)
    mild = DriftSignal(T0, drifted_share=0.4, auc_drop=0.02, has_champion=True)
    assert urgency(mild, settings) is None
    assert "urgent_drift_share" in str(urgency(DriftSignal(T0, 0.7, 0.0, True), settings))
    assert "urgent_auc_drop" in str(urgency(DriftSignal(T0, 0.1, 0.12, True), settings))
    assert urgency(DriftSignal(T0, None, None, False), settings) == "nothing is deployed yet"
    deferral = plan_deferral(CsvIntensityProvider(), settings, mild, T0 + HOUR, "retrain:7", "b.parquet")
    assert (deferral.decision, deferral.window_start, deferral.expected_g_co2_per_kwh) == (
        DEFERRED,
        T0 + 12 * HOUR,
        120.0,
    )
    assert deferral.report_g_co2_per_kwh == 380.0  # midnight in the example solar profile


def test_the_retraining_metadata_prices_the_wait_with_measured_energy_only() -> None:
    settings = DeferralSettings("EXAMPLE-SOLAR", timedelta(hours=24), HOUR, urgent_drift_share=0.6, urgent_auc_drop=0.1)
    deferral = plan_deferral(CsvIntensityProvider(), settings, DriftSignal(T0, 0.4, 0.0, True), T0, "retrain:1", "b")
    tags = deferral.tags(request_g_co2_per_kwh=120.0)
    at_noon = deferral_metadata(tags, CsvIntensityProvider, T0 + 12 * HOUR, energy_kwh=0.002)
    assert at_noon["carbon_expected_g_per_kwh"] == 120.0 and at_noon["carbon_actual_g_per_kwh"] == 120.0
    assert at_noon["co2_avoided_g"] == pytest.approx(0.002 * (380 - 120))
    assert deferral_metadata(tags, CsvIntensityProvider, T0 + 12 * HOUR, energy_kwh=None)["co2_avoided_g"] == (
        "unmeasured"
    )

    def broken() -> CsvIntensityProvider:
        return CsvIntensityProvider("/nonexistent/profile.csv")

    failed = deferral_metadata(tags, broken, T0 + 12 * HOUR, energy_kwh=0.002)
    assert failed["carbon_actual_g_per_kwh"] == "unavailable" and "co2_avoided_g" not in failed
    assert "profile.csv: cannot read" in str(failed["carbon_actual_unavailable_reason"])
    assert deferral_metadata({}, broken, T0, energy_kwh=0.002) == {}  # a run the sensor did not time


class _Api(BaseHTTPRequestHandler):
    """Answers like Electricity Maps: hourly forecast from T0 + 1 h, history before it; 401 without the token."""

    delay_s = 0.0

    def do_GET(self) -> None:
        if self.headers.get("auth-token") != TOKEN:
            self.send_response(401)
            self.end_headers()
            return
        threading.Event().wait(self.delay_s)
        kind = "forecast" if "/carbon-intensity/forecast" in self.path else "history"
        first = T0 + HOUR if kind == "forecast" else T0 - 2 * HOUR
        values = [250, 90, 300] if kind == "forecast" else [410, 420, 430]
        rows = [
            {"carbonIntensity": v, "datetime": (first + i * HOUR).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
            for i, v in enumerate(values)
        ]
        body = json.dumps({"zone": "FR", kind: rows}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """The timeout test's client hangs up before the slow answer: expected, not worth a traceback."""


@pytest.fixture
def api() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v3"
    _Api.delay_s = 0.0
    server.shutdown()
    server.server_close()


def test_http_provider_sends_the_token_and_merges_history_before_the_forecast(api: str) -> None:
    provider = HttpIntensityProvider(api, TOKEN, timeout_s=5)
    points = provider.intensities("FR", T0, T0 + 4 * HOUR)
    assert [(p.start - T0, p.g_co2_per_kwh) for p in points] == [
        (timedelta(0), 430.0),
        (HOUR, 250.0),
        (2 * HOUR, 90.0),
        (3 * HOUR, 300.0),
    ]
    assert cheapest_window(points, T0, T0 + 4 * HOUR, HOUR).start == T0 + 2 * HOUR


def test_http_provider_errors_name_the_url_and_never_the_token(api: str) -> None:
    with pytest.raises(CarbonIntensityError, match=r"/v3/carbon-intensity/forecast\?zone=FR: HTTP 401") as refused:
        HttpIntensityProvider(api, "wrong-token", timeout_s=5).intensities("FR", T0, T0 + HOUR)
    assert "api_token" in str(refused.value) and "wrong-token" not in str(refused.value)
    _Api.delay_s = 1.0
    with pytest.raises(CarbonIntensityError, match=r"forecast\?zone=FR: no answer within 0.2 s") as slow:
        HttpIntensityProvider(api, TOKEN, timeout_s=0.2).intensities("FR", T0 + HOUR, T0 + 2 * HOUR)
    assert TOKEN not in str(slow.value)


def test_http_provider_reports_a_server_that_is_down() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    server.server_close()  # nothing listens on the port any more
    with pytest.raises(CarbonIntensityError, match=rf"{url}/carbon-intensity/forecast\?zone=FR: cannot connect"):
        HttpIntensityProvider(url, TOKEN, timeout_s=2).intensities("FR", T0, T0 + HOUR)
