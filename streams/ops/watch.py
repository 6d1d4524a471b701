"""``freshet watch``: a live terminal view of a running system.

Two halves. The pure half turns two scrapes of the worker's ``/metrics`` into what the header shows:
throughput (the rate of ``freshet_events_total{stage="predict"}``) and event-to-prediction latency p50/p99
(quantiles of the ``freshet_event_to_prediction_seconds`` bucket increments between the scrapes, the way
Prometheus' ``histogram_quantile`` computes them). The I/O half, :func:`run_watch`, follows the ``metrics``,
``drift`` and ``dead-letter`` topics with :class:`~streams.ops.readers.TopicReader` (no consumer group, so
watching never moves anyone's offsets), feeds a :class:`~streams.ops.watch_view.WatchState` and redraws it
with ``rich.live.Live``. Kafka and rich are imported only when the watch runs (``freshet --help`` stays
instant).

>>> before = Scrape(t=10.0, samples={'freshet_events_total{stage="predict"}': 1000.0})
>>> after = Scrape(t=12.0, samples={'freshet_events_total{stage="predict"}': 3500.0})
>>> throughput(before, after).events_per_s
1250.0
"""

from __future__ import annotations

import http.client
import io
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from streams.ops.cli_common import Context, fail
from streams.ops.scrape import parse_key

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from streams.ops.watch_view import WatchState
    from streams.settings import Settings

PREDICT_EVENTS = "freshet_events_total"
PREDICT_STAGE = "predict"
LATENCY_HISTOGRAM = "freshet_event_to_prediction_seconds"
WATCHED_TOPICS = ("metrics", "drift", "dead-letter")



# --- pure: scrapes → throughput and latency ----------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    """One scrape of a /metrics page: when it was taken (monotonic seconds) and its samples, keyed
    ``'name{labels}'`` as :func:`streams.ops.procs.scrape` returns them."""

    t: float
    samples: Mapping[str, float] = field(default_factory=dict)


class Throughput(NamedTuple):
    """What the header shows: events predicted per second, latency p50 and p99 in milliseconds (``None``
    when no prediction was made between the two scrapes)."""

    events_per_s: float
    p50_ms: float | None
    p99_ms: float | None


def sample_sum(samples: Mapping[str, float], name: str, **labels: str) -> float | None:
    """The sum of ``name``'s samples whose labels include ``labels``; ``None`` when there is none.

    >>> s = {'freshet_events_total{stage="predict"}': 7.0, 'freshet_events_total{stage="validate"}': 9.0}
    >>> sample_sum(s, "freshet_events_total", stage="predict"), sample_sum(s, "freshet_events_total")
    (7.0, 16.0)
    >>> sample_sum(s, "freshet_labels_total") is None
    True
    """
    total: float | None = None
    for key, value in samples.items():
        metric, have = parse_key(key)
        if metric == name and all(have.get(k) == v for k, v in labels.items()):
            total = (total or 0.0) + value
    return total


def sample_max(samples: Mapping[str, float], name: str) -> float | None:
    """The largest sample of ``name`` (over its labels), or None when there is none.

    >>> name = "freshet_served_model_staleness_examples"
    >>> sample_max({name + '{model="a"}': 3.0, name + '{model="b"}': 7.0}, name), sample_max({}, name)
    (7.0, None)
    """
    values = [v for k, v in samples.items() if parse_key(k)[0] == name]
    return max(values) if values else None


def histogram_buckets(samples: Mapping[str, float], name: str) -> list[tuple[float, float]]:
    """The cumulative buckets ``(upper bound, count)`` of histogram ``name``, sorted by bound.

    Series of the same bound but different other labels are added up.

    >>> s = {'lat_seconds_bucket{le="0.1"}': 3.0, 'lat_seconds_bucket{le="+Inf"}': 5.0,
    ...      'lat_seconds_bucket{le="0.01"}': 1.0, "lat_seconds_count": 5.0}
    >>> histogram_buckets(s, "lat_seconds")
    [(0.01, 1.0), (0.1, 3.0), (inf, 5.0)]
    """
    by_bound: dict[float, float] = {}
    for key, value in samples.items():
        metric, labels = parse_key(key)
        if metric != f"{name}_bucket" or "le" not in labels:
            continue
        try:
            bound = float(labels["le"])  # float() reads "+Inf" as inf
        except ValueError:
            continue
        by_bound[bound] = by_bound.get(bound, 0.0) + value
    return sorted(by_bound.items())


def bucket_increase(
    before: Sequence[tuple[float, float]], after: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """What each cumulative bucket gained between two scrapes (observations made in between).

    A bucket that shrank means the process restarted: then ``after`` alone is the increase.

    >>> bucket_increase([(0.1, 4.0), (float("inf"), 5.0)], [(0.1, 10.0), (float("inf"), 12.0)])
    [(0.1, 6.0), (inf, 7.0)]
    >>> bucket_increase([(0.1, 40.0), (float("inf"), 50.0)], [(0.1, 1.0), (float("inf"), 2.0)])
    [(0.1, 1.0), (inf, 2.0)]
    """
    old = dict(before)
    if any(count < old.get(bound, 0.0) for bound, count in after):
        return list(after)
    return [(bound, count - old.get(bound, 0.0)) for bound, count in after]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile (0..1) of a histogram's cumulative ``(upper bound, count)`` buckets.

    Like Prometheus' ``histogram_quantile``: find the bucket holding rank ``q * total`` and interpolate
    linearly inside it (the first bucket starts at 0). A rank in the ``+Inf`` bucket answers the highest
    finite bound. ``None`` when the histogram holds no observation.

    >>> b = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    >>> histogram_quantile(0.5, b), histogram_quantile(0.9, b)
    (0.01, 0.1)
    >>> round(histogram_quantile(0.99, b), 6)
    0.91
    >>> histogram_quantile(0.99, [(0.1, 1.0), (float("inf"), 10.0)])
    0.1
    >>> histogram_quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    True
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0..1, not {q}")
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    below_bound, below_count = 0.0, 0.0
    for i, (bound, count) in enumerate(ordered):
        if count >= rank and count > 0:
            if math.isinf(bound):
                finite = [b for b, _ in ordered[:i] if not math.isinf(b)]
                return finite[-1] if finite else None
            if i == 0 and bound <= 0:
                return bound
            return below_bound + (bound - below_bound) * (rank - below_count) / (count - below_count)
        below_bound, below_count = bound, count
    return None


def counter_increase(before: float | None, after: float | None) -> float:
    """How much a counter grew; a counter that went down was reset (process restart), so ``after`` is
    the increase. A counter not (yet) exposed counts as 0.

    >>> counter_increase(100.0, 250.0), counter_increase(100.0, 30.0), counter_increase(None, 5.0)
    (150.0, 30.0, 5.0)
    """
    b, a = before or 0.0, after or 0.0
    return a if a < b else a - b


def throughput(before: Scrape, after: Scrape) -> Throughput:
    """Predictions per second and latency p50/p99 (ms) between two scrapes of the worker's /metrics.

    >>> def page(n, fast, all_):
    ...     return {'freshet_events_total{stage="predict"}': n,
    ...             'freshet_event_to_prediction_seconds_bucket{le="0.005"}': fast,
    ...             'freshet_event_to_prediction_seconds_bucket{le="0.05"}': all_,
    ...             'freshet_event_to_prediction_seconds_bucket{le="+Inf"}': all_}
    >>> throughput(Scrape(0.0, page(0, 0, 0)), Scrape(2.0, page(400, 200, 400)))
    Throughput(events_per_s=200.0, p50_ms=5.0, p99_ms=49.1)
    >>> throughput(Scrape(2.0, page(400, 200, 400)), Scrape(3.0, page(400, 200, 400)))
    Throughput(events_per_s=0.0, p50_ms=None, p99_ms=None)
    """
    dt = after.t - before.t
    n = counter_increase(
        sample_sum(before.samples, PREDICT_EVENTS, stage=PREDICT_STAGE),
        sample_sum(after.samples, PREDICT_EVENTS, stage=PREDICT_STAGE),
    )
    rate = n / dt if dt > 0 else 0.0
    gained = bucket_increase(
        histogram_buckets(before.samples, LATENCY_HISTOGRAM), histogram_buckets(after.samples, LATENCY_HISTOGRAM)
    )
    p50, p99 = histogram_quantile(0.5, gained), histogram_quantile(0.99, gained)
    return Throughput(
        events_per_s=rate,
        p50_ms=None if p50 is None else round(p50 * 1000.0, 3),
        p99_ms=None if p99 is None else round(p99 * 1000.0, 3),
    )


def frame(state: WatchState, worker_status: str) -> RenderableType:
    """The screen: one line about the worker's /metrics, then :func:`streams.ops.watch_view.render`.

    >>> from streams.ops.watch_view import WatchState
    >>> text = frame_text(WatchState(), "worker unreachable at http://127.0.0.1:1/metrics", width=100)
    >>> "worker unreachable" in text and "no metric snapshots yet" in text
    True
    """
    from rich.console import Group
    from rich.text import Text

    from streams.ops.watch_view import render

    style = "bold red" if "unreachable" in worker_status else "dim"
    return Group(Text(worker_status, style=style, no_wrap=True, overflow="ellipsis"), render(state))


def frame_text(state: WatchState, worker_status: str, width: int = 120) -> str:
    """:func:`frame` as plain text, ``width`` columns wide (what ``--once`` prints)."""
    from rich.console import Console

    console = Console(record=True, width=width, file=io.StringIO(), color_system=None, force_terminal=False)
    console.print(frame(state, worker_status))
    return console.export_text()


# --- I/O: topics and /metrics → state → screen -------------------------------------------------------


class WorkerMonitor:
    """Scrapes the worker's /metrics each refresh and keeps the previous scrape for the rates.

    ``scrape`` (url → samples) and ``clock`` (monotonic seconds) are injectable for tests.

    >>> from streams.ops.watch_view import WatchState
    >>> pages = iter([{'freshet_events_total{stage="predict"}': 10.0},
    ...               {'freshet_events_total{stage="predict"}': 60.0}])
    >>> times = iter([0.0, 0.5])
    >>> monitor, state = WorkerMonitor("http://w/metrics", lambda url: next(pages), lambda: next(times)), WatchState()
    >>> monitor.update(state); monitor.update(state)
    >>> state.events_per_s, monitor.status
    (100.0, 'worker http://w/metrics: up')
    """

    def __init__(
        self,
        url: str,
        scrape: Callable[[str], Mapping[str, float]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from streams.ops.scrape import scrape as http_scrape

        self.url = url
        self._scrape = scrape or http_scrape
        self._clock = clock
        self._last: Scrape | None = None
        self.status = f"worker {url}: waiting for the first scrape"

    def update(self, state: WatchState) -> None:
        """Scrape once; on success feed the rate since the previous scrape into ``state``."""
        try:
            now = Scrape(self._clock(), self._scrape(self.url))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            self._last = None
            state.events_per_s = state.p50_ms = state.p99_ms = None
            reason = getattr(exc, "reason", None) or exc
            self.status = f"worker unreachable at {self.url} ({reason}): no throughput or latency"
            return
        if self._last is not None:
            state.on_throughput(*throughput(self._last, now))
        state.on_staleness(
            sample_max(now.samples, "freshet_served_model_staleness_examples"),
            sample_max(now.samples, "freshet_served_model_staleness_seconds"),
        )
        self._last = now
        self.status = f"worker {self.url}: up"


def default_worker_url(settings: Settings) -> str:
    """Where the worker serves /metrics by default: ``http://127.0.0.1:{FRESHET_METRICS_PORT}/metrics``."""
    return f"http://127.0.0.1:{settings.metrics_port}/metrics"


def _dispatch(state: WatchState) -> dict[str, Callable[[Any], None]]:
    return {"metrics": state.on_metrics, "drift": state.on_drift, "dead-letter": state.on_dead_letter}


def _drain(readers: Mapping[str, Any], handlers: Mapping[str, Callable[[Any], None]], until: float) -> None:
    """Poll every reader, round robin, until the monotonic deadline ``until``."""
    while True:
        for name, reader in readers.items():
            for _, value, _ in reader.poll(timeout_s=0.05):
                handlers[name](value)
        if time.monotonic() >= until:
            return


def run_watch(
    settings: Settings,
    *,
    worker_url: str,
    refresh_s: float,
    duration_s: float,
    from_beginning: bool,
    once: bool,
    echo: Callable[[str], None] = click.echo,
    console: Console | None = None,
) -> None:
    """Follow the topics and the worker until ``duration_s`` passes (0: until Ctrl-C).

    With ``once``, collect for one refresh interval and print a single plain-text frame instead.
    """
    from rich.live import Live

    from streams.ops.readers import TopicReader
    from streams.ops.watch_view import WatchState

    # kafka-python logs connection trouble on the root logger's last-resort handler, which would
    # scribble over the live screen; the view itself shows what is unreachable.
    logging.getLogger("kafka").addHandler(logging.NullHandler())
    logging.getLogger("kafka").propagate = False

    state = WatchState()
    monitor = WorkerMonitor(worker_url)
    handlers = _dispatch(state)
    readers = {name: TopicReader(settings, name, from_end=not from_beginning) for name in WATCHED_TOPICS}
    start = time.monotonic()
    try:
        monitor.update(state)
        if once:
            _drain(readers, handlers, until=start + refresh_s)
            monitor.update(state)
            echo(frame_text(state, monitor.status, width=shutil.get_terminal_size((120, 40)).columns))
            return
        with Live(frame(state, monitor.status), console=console, auto_refresh=False) as live:
            tick = start
            while duration_s <= 0 or time.monotonic() - start < duration_s:
                tick += refresh_s
                end = tick if duration_s <= 0 else min(tick, start + duration_s)
                _drain(readers, handlers, until=end)
                monitor.update(state)
                live.update(frame(state, monitor.status), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        for reader in readers.values():
            reader.close()


def kafka_unreachable(settings: Settings) -> str | None:
    """The one-line error when nothing listens at the Kafka address (viewers never start servers)."""
    from streams.ops.services import port_open

    if port_open(settings.kafka_host, settings.kafka_port):
        return None
    return (
        f"Kafka is not reachable at {settings.kafka_bootstrap}: start it with `freshet services up` "
        "or fix FRESHET_KAFKA_HOST/FRESHET_KAFKA_PORT"
    )


@click.command("watch")
@click.option(
    "--worker-url",
    default=None,
    help="The worker's /metrics page (default http://127.0.0.1:{FRESHET_METRICS_PORT}/metrics).",
)
@click.option("--from-beginning", is_flag=True, help="Replay the topics from their start (default: new messages).")
@click.option("--refresh-s", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between redraws (and between scrapes of /metrics).")
@click.option("--duration-s", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Exit after this many seconds (0: run until Ctrl-C).")
@click.option("--once", is_flag=True, help="Collect for one refresh interval, print one plain-text frame, exit.")
@click.pass_obj
def watch(
    c: Context, worker_url: str | None, from_beginning: bool, refresh_s: float, duration_s: float, once: bool
) -> None:
    """Live view: models' online metrics with sparklines, drift alerts, dead letters, throughput, latency."""
    from kafka.errors import KafkaError


    if (problem := kafka_unreachable(c.settings)) is not None:
        fail(problem)
    try:
        run_watch(
            c.settings,
            worker_url=worker_url or default_worker_url(c.settings),
            refresh_s=refresh_s,
            duration_s=duration_s,
            from_beginning=from_beginning,
            once=once,
        )
    except KafkaError as exc:
        fail(f"cannot read topics from Kafka at {c.settings.kafka_bootstrap}: {exc}")
