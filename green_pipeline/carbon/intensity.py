"""Grid carbon intensity over time, and the cleanest moment to start a job before a deadline.

A provider answers one question: the hourly gCO2eq/kWh of a zone over a time range. The offline default
reads a CSV (the packaged one is an EXAMPLE profile, not real grid data); the HTTP provider speaks the
Electricity Maps API (``/carbon-intensity/forecast`` and ``/history``) with nothing but urllib, so deferral
adds no dependency. Every failure is a ``CarbonIntensityError`` naming the file or URL, never the token.
"""

from __future__ import annotations

import csv
import io
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any, Protocol

from green_pipeline.errors import GreenPipelineError

HOUR = timedelta(hours=1)
#: Seconds an intensity API may take to answer; past it the read fails and the retrain does not wait.
TIMEOUT_S = 10.0
#: The profile shipped with the package: made-up daily shapes for trying deferral out, not measurements.
EXAMPLE_PROFILE = "profiles/example_intensity.csv"
PROFILE_COLUMNS = ("zone", "hour", "g_co2_per_kwh")


class CarbonIntensityError(GreenPipelineError):
    """Carbon intensity could not be read (file, zone, URL, timeout or payload); deferral then never waits."""


@dataclass(frozen=True)
class IntensityPoint:
    """The grid's average intensity over ``[start, end)``."""

    start: datetime
    end: datetime
    g_co2_per_kwh: float


@dataclass(frozen=True)
class Window:
    """Where a job of the given duration should start, and the mean intensity it should then see."""

    start: datetime
    mean_g_co2_per_kwh: float


class IntensityProvider(Protocol):
    def intensities(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Points covering as much of ``[start, end)`` as the source knows, in time order."""
        ...


def utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC, so profiles and APIs without offsets compare with aware clocks."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def floor_hour(moment: datetime) -> datetime:
    return utc(moment).replace(minute=0, second=0, microsecond=0)


class CsvIntensityProvider:
    """Intensities from a CSV of ``zone,hour,g_co2_per_kwh``; lines starting with ``#`` are comments.

    ``hour`` is either an hour of the day (0-23, a daily profile repeated every day, in UTC) or an ISO
    datetime (that hour only). One zone uses one form.
    """

    def __init__(self, path: str | None = None) -> None:
        self.source = path or f"green_pipeline/carbon/{EXAMPLE_PROFILE}"
        text = _read_profile(path)
        self.daily: dict[str, dict[int, float]] = {}
        self.dated: dict[str, dict[datetime, float]] = {}
        for number, row in enumerate(_profile_rows(text, self.source), start=1):
            self._add(row, number)

    def _add(self, row: dict[str, str], number: int) -> None:
        zone, hour, value = (row[c].strip() for c in PROFILE_COLUMNS)
        where = f"{self.source}, data row {number} (zone {zone!r})"
        try:
            intensity = float(value)
        except ValueError:
            raise CarbonIntensityError(f"{where}: g_co2_per_kwh {value!r} is not a number.") from None
        if not math.isfinite(intensity) or intensity < 0:
            raise CarbonIntensityError(f"{where}: g_co2_per_kwh must be a finite number >= 0, got {value}.")
        if hour.isdigit():
            if not 0 <= int(hour) <= 23:
                raise CarbonIntensityError(f"{where}: hour {hour} is not an hour of the day (0-23).")
            self.daily.setdefault(zone, {})[int(hour)] = intensity
        else:
            try:
                self.dated.setdefault(zone, {})[floor_hour(datetime.fromisoformat(hour))] = intensity
            except ValueError:
                raise CarbonIntensityError(
                    f"{where}: hour {hour!r} is neither an hour of the day (0-23) nor an ISO datetime."
                ) from None
        if zone in self.daily and zone in self.dated:
            raise CarbonIntensityError(f"{where}: a zone uses either hours of the day or datetimes, not both.")

    def intensities(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        daily, dated = self.daily.get(zone), self.dated.get(zone)
        if daily is None and dated is None:
            known = sorted({*self.daily, *self.dated})
            raise CarbonIntensityError(f"{self.source}: no zone {zone!r}; zones in the file: {known}.")
        points, hour = [], floor_hour(start)
        while hour < utc(end):
            value = daily.get(hour.hour) if daily is not None else dated.get(hour)  # type: ignore[union-attr]
            if value is not None:
                points.append(IntensityPoint(hour, hour + HOUR, value))
            hour += HOUR
        return points


def _read_profile(path: str | None) -> str:
    try:
        if path is None:
            return files("green_pipeline.carbon").joinpath(EXAMPLE_PROFILE).read_text(encoding="utf-8")
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CarbonIntensityError(f"{path or EXAMPLE_PROFILE}: cannot read the intensity profile: {exc}") from exc


def _profile_rows(text: str, source: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    missing = [c for c in PROFILE_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CarbonIntensityError(f"{source}: missing column(s) {missing}; expected {list(PROFILE_COLUMNS)}.")
    return list(reader)


class HttpIntensityProvider:
    """Electricity Maps style API: ``GET {base_url}/carbon-intensity/forecast?zone=Z`` with an ``auth-token``.

    History (``/carbon-intensity/history``) is fetched only when the range starts before the forecast does,
    e.g. for the intensity at a drift report's time.
    """

    def __init__(self, base_url: str, token: str | None, timeout_s: float = TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def intensities(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        forecast = self._points("forecast", zone)
        if not forecast or utc(start) < forecast[0].start:
            history = [p for p in self._points("history", zone) if not forecast or p.start < forecast[0].start]
            forecast = history + forecast
        return [p for p in forecast if p.end > utc(start) and p.start < utc(end)]

    def _points(self, kind: str, zone: str) -> list[IntensityPoint]:
        url = f"{self.base_url}/carbon-intensity/{kind}?{urllib.parse.urlencode({'zone': zone})}"
        payload = self._get(url)
        try:
            entries = sorted(
                (utc(datetime.fromisoformat(e["datetime"])), float(e["carbonIntensity"])) for e in payload[kind]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CarbonIntensityError(
                f"{url}: expected {{{kind!r}: [{{'carbonIntensity': number, 'datetime': ISO}}]}}: {exc!r}"
            ) from exc
        return step_points(entries)

    def _get(self, url: str) -> Any:
        headers = {"auth-token": self.token} if self.token else {}
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response's socket
            hint = " (check the api_token setting)" if exc.code in (401, 403) else ""
            raise CarbonIntensityError(f"{url}: HTTP {exc.code} {exc.reason}{hint}.") from None
        except TimeoutError:
            raise CarbonIntensityError(f"{url}: no answer within {self.timeout_s} s (timeout_s).") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise CarbonIntensityError(f"{url}: no answer within {self.timeout_s} s (timeout_s).") from None
            raise CarbonIntensityError(f"{url}: cannot connect: {exc.reason}.") from None
        except OSError as exc:  # e.g. the connection reset while reading
            raise CarbonIntensityError(f"{url}: the connection failed: {exc}.") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CarbonIntensityError(f"{url}: the answer is not JSON: {exc}.") from None


def step_points(entries: Sequence[tuple[datetime, float]]) -> list[IntensityPoint]:
    """Each value holds until the next one; the last for the previous step (one hour if it is alone)."""
    last_step = entries[-1][0] - entries[-2][0] if len(entries) > 1 else HOUR
    ends = [start for start, _ in entries[1:]] + ([entries[-1][0] + last_step] if entries else [])
    return [IntensityPoint(start, end, value) for (start, value), end in zip(entries, ends, strict=True)]


def intensity_at(points: Sequence[IntensityPoint], moment: datetime) -> float | None:
    """The intensity in force at ``moment``, or None when no point covers it."""
    moment = utc(moment)
    return next((p.g_co2_per_kwh for p in points if p.start <= moment < p.end), None)


def mean_intensity(points: Sequence[IntensityPoint], start: datetime, duration: timedelta) -> float | None:
    """Time-weighted mean over ``[start, start + duration)``, or None when the points leave a gap in it."""
    end, covered, weighted = start + duration, timedelta(0), 0.0
    for point in points:
        overlap = min(end, point.end) - max(start, point.start)
        if overlap > timedelta(0):
            covered += overlap
            weighted += point.g_co2_per_kwh * overlap.total_seconds()
    if duration <= timedelta(0) or covered < duration - timedelta(seconds=1):
        return None
    return weighted / duration.total_seconds()


def cheapest_window(points: Sequence[IntensityPoint], now: datetime, deadline: datetime, duration: timedelta) -> Window:
    """The start in ``[now, deadline - duration]`` with the lowest mean intensity (the earliest on a tie).

    The mean is piecewise linear in the start, so its minimum is at ``now``, ``latest`` or a start where the
    window's start or end meets a point boundary: those are the candidates. With no time left before the
    deadline the answer is ``now``.
    """
    now, latest = utc(now), utc(deadline) - duration
    boundaries = {b for p in points for b in (p.start, p.end)}
    inner = {s for b in boundaries for s in (b, b - duration) if now < s < latest}
    starts = [now, *sorted(inner), *([latest] if latest > now else [])]
    scored = [(mean, start) for start in starts if (mean := mean_intensity(points, start, duration)) is not None]
    if not scored:
        raise CarbonIntensityError(
            f"no intensity covers a {duration} job starting between {now.isoformat()} and {latest.isoformat()}."
        )
    best = min(scored, key=lambda item: item[0])  # min keeps the first, i.e. earliest, of equal means
    return Window(start=best[1], mean_g_co2_per_kwh=best[0])
