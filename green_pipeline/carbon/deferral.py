"""Carbon-aware deferral of retraining: which retrains may wait, until when, and what waiting saved.

A retrain asked for by a drift report is urgent when nothing is deployed, or when the drifted share or the
serving model's AUC drop reaches its "urgent" threshold (set above the thresholds that trigger a retrain);
urgent retrains run at once. Others wait for the lowest-intensity window before a deadline. The run's tags
carry the intensities so the retraining step can record expected vs actual and the CO2 avoided.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from green_pipeline.carbon.intensity import (
    HOUR,
    CarbonIntensityError,
    IntensityProvider,
    cheapest_window,
    floor_hour,
    intensity_at,
    utc,
)
from green_pipeline.energy.measurement import EnergyStatus

TAG_PREFIX = "green_pipeline/carbon_"
DECISION_TAG = f"{TAG_PREFIX}decision"
REASON_TAG = f"{TAG_PREFIX}reason"
ZONE_TAG = f"{TAG_PREFIX}zone"
WINDOW_TAG = f"{TAG_PREFIX}window_start"
EXPECTED_TAG = f"{TAG_PREFIX}expected_g_per_kwh"
REQUEST_TAG = f"{TAG_PREFIX}request_g_per_kwh"
REPORT_TAG = f"{TAG_PREFIX}report_g_per_kwh"
UNAVAILABLE = "unavailable"

#: Decisions: waits for a cleaner window / the window is now / urgent / the provider failed, so no wait.
DEFERRED, CLEANEST_NOW, URGENT, PROVIDER_FAILED = "deferred", "cleanest_now", "urgent", "provider_failed"


@dataclass(frozen=True)
class DeferralSettings:
    """Where the grid is, how long a retrain may wait and lasts, and from when it never waits (``carbon_aware``)."""

    #: A zone of the packaged EXAMPLE profile, so deferral can be tried offline.
    zone: str = "EXAMPLE-SOLAR"
    deadline: timedelta = timedelta(hours=12)
    expected_duration: timedelta = timedelta(minutes=15)
    #: Kept above ``MonitoringThresholds.drift_share``, so only the worst drift skips the wait.
    urgent_drift_share: float = 0.6
    urgent_auc_drop: float = 0.1


@dataclass(frozen=True)
class DriftSignal:
    """What a drift report says about how badly the serving model needs replacing."""

    reported_at: datetime
    drifted_share: float | None
    auc_drop: float | None
    has_champion: bool


def urgency(signal: DriftSignal, settings: DeferralSettings) -> str | None:
    """Why this retrain must not wait, or None when it may."""
    if not signal.has_champion:
        return "nothing is deployed yet"
    if signal.drifted_share is not None and signal.drifted_share >= settings.urgent_drift_share:
        return f"drifted share {signal.drifted_share:.3f} >= urgent_drift_share {settings.urgent_drift_share}"
    if signal.auc_drop is not None and signal.auc_drop >= settings.urgent_auc_drop:
        return f"AUC drop {signal.auc_drop:.4f} >= urgent_auc_drop {settings.urgent_auc_drop}"
    return None


@dataclass(frozen=True)
class Deferral:
    """A retraining run and the window it waits for; kept as JSON in the drift sensor's cursor."""

    run_key: str
    partition: str | None
    zone: str
    decision: str
    window_start: datetime
    expected_g_co2_per_kwh: float
    report_g_co2_per_kwh: float | None

    def due(self, now: datetime) -> bool:
        return utc(now) >= self.window_start

    def tags(self, request_g_co2_per_kwh: float | None) -> dict[str, str]:
        """Run tags (strings): the decision and the expected, request-time and report-time intensities."""
        return {
            DECISION_TAG: self.decision,
            ZONE_TAG: self.zone,
            WINDOW_TAG: self.window_start.isoformat(),
            EXPECTED_TAG: _text(self.expected_g_co2_per_kwh),
            REQUEST_TAG: _text(request_g_co2_per_kwh),
            REPORT_TAG: _text(self.report_g_co2_per_kwh),
        }

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "window_start": self.window_start.isoformat()}

    @classmethod
    def from_json(cls, document: Mapping[str, object]) -> Deferral:
        values = dict(document)
        values["window_start"] = utc(datetime.fromisoformat(str(values["window_start"])))
        return cls(**values)  # type: ignore[arg-type]


def plan_deferral(
    provider: IntensityProvider,
    settings: DeferralSettings,
    signal: DriftSignal,
    now: datetime,
    run_key: str,
    partition: str | None,
) -> Deferral:
    """The cleanest start between ``now`` and the report's deadline; raises CarbonIntensityError if unknown."""
    now, reported = utc(now), utc(signal.reported_at)
    deadline = reported + settings.deadline
    end = max(deadline, now + settings.expected_duration)
    points = provider.intensities(settings.zone, floor_hour(min(reported, now)), end)
    window = cheapest_window(points, now, deadline, settings.expected_duration)
    return Deferral(
        run_key=run_key,
        partition=partition,
        zone=settings.zone,
        decision=DEFERRED if window.start > now else CLEANEST_NOW,
        window_start=window.start,
        expected_g_co2_per_kwh=window.mean_g_co2_per_kwh,
        report_g_co2_per_kwh=intensity_at(points, reported),
    )


def immediate_tags(zone: str, decision: str, reason: str) -> dict[str, str]:
    """Tags of a retrain that did not wait (urgent, or the intensity could not be read)."""
    return {DECISION_TAG: decision, ZONE_TAG: zone, REASON_TAG: reason[:200]}


def current_intensity(provider: IntensityProvider, zone: str, now: datetime) -> float:
    """The intensity in force at ``now``; raises CarbonIntensityError when the provider does not know it."""
    value = intensity_at(provider.intensities(zone, floor_hour(now), floor_hour(now) + HOUR), now)
    if value is None:
        raise CarbonIntensityError(f"the provider has no intensity for zone {zone!r} at {utc(now).isoformat()}.")
    return value


def deferral_metadata(
    tags: Mapping[str, str],
    provider: Callable[[], IntensityProvider],
    now: datetime,
    energy_kwh: float | None,
) -> dict[str, float | str]:
    """What the retraining step records about its carbon timing; empty for runs the drift sensor did not tag.

    ``co2_avoided_g`` is the step's energy (measured or estimated) times (intensity at the report's time -
    intensity at the run's start): what waiting saved against retraining at once. It is "unmeasured" without energy.
    """
    decision = tags.get(DECISION_TAG)
    if decision is None:
        return {}
    metadata: dict[str, float | str] = {"carbon_decision": decision, "carbon_zone": tags.get(ZONE_TAG, "")}
    for key, tag in (
        ("carbon_reason", REASON_TAG),
        ("carbon_window_start", WINDOW_TAG),
        ("carbon_expected_g_per_kwh", EXPECTED_TAG),
        ("carbon_request_g_per_kwh", REQUEST_TAG),
        ("carbon_report_g_per_kwh", REPORT_TAG),
    ):
        if tag in tags:
            metadata[key] = _number_or_text(tags[tag])
    actual: float | None = None
    try:  # the provider is built here so a broken profile or URL is recorded, not fatal to the retrain
        actual = current_intensity(provider(), str(metadata["carbon_zone"]), now)
        metadata["carbon_actual_g_per_kwh"] = actual
    except CarbonIntensityError as exc:
        metadata["carbon_actual_g_per_kwh"] = UNAVAILABLE
        metadata["carbon_actual_unavailable_reason"] = str(exc)
    report = metadata.get("carbon_report_g_per_kwh")
    if isinstance(report, float) and actual is not None:
        unmeasured = EnergyStatus.UNMEASURED.value
        metadata["co2_avoided_g"] = energy_kwh * (report - actual) if energy_kwh is not None else unmeasured
        energy = unmeasured if energy_kwh is None else f"{energy_kwh:.6g} kWh"
        metadata["co2_avoided_basis"] = (
            f"retraining energy {energy} x (intensity at the report's time {report:g} - at the run's start "
            f"{actual:g} g/kWh)"
        )
    return metadata


def _text(value: float | None) -> str:
    return UNAVAILABLE if value is None else f"{value:.1f}"


def _number_or_text(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value
