"""freshet report: the PNGs open, are not blank, and the HTML page shows them and the alerts."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.drift import DriftAlert
from streams.ops.report import build_report

T0 = 1_700_000_000.0


def snapshots() -> list[dict[str, Any]]:
    rng = random.Random(1)
    out = []
    for n in range(0, 20_000, 250):
        for model, role, offset in (("default/lr", "champion", 0.0), ("default/tree", "challenger", -0.05)):
            rolling = (0.9 if n < 10_000 else 0.7) + offset + rng.gauss(0, 0.01)
            out.append({
                "v": 1, "model": model, "slot": "default", "name": model.split("/")[1], "role": role,
                "version": n // 1000, "n": n, "offset": n, "event_ts": T0 + n, "ts": T0 + n + 2.0,
                "metrics": {"accuracy_rolling": rolling, "accuracy": 0.85 + offset, "log_loss_rolling": 1 - rolling,
                            "champion": 1.0 if role == "champion" else 0.0, "roc_auc": None},
            })
    return out


def alerts() -> list[dict[str, Any]]:
    concept = DriftAlert(kind="concept", subject="default/lr", detector="adwin", statistic="error_mean",
                         value=0.3, threshold=0.1, event_ts=T0 + 10_087, offset=10_087, detected_ts=T0 + 10_090,
                         n=10_088)
    feature = DriftAlert(kind="feature", subject="amount_<mean>", detector="window", statistic="psi", value=0.31,
                         threshold=0.2, event_ts=T0 + 9_500, offset=9_500, detected_ts=T0 + 9_501)
    return [concept.to_dict(), feature.to_dict()]


def check_png(path: Path) -> np.ndarray:
    assert path.exists() and path.stat().st_size > 10_000
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width >= 600 and img.height >= 300
        pixels = np.asarray(img.convert("RGB"))
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    assert len(np.unique(packed)) > 50  # not a single colour: lines, text, markers
    return pixels


def red_columns(pixels: np.ndarray) -> int:
    """How many pixel columns hold a long run of pure-ish red (the concept-drift line, tab:red #d62728)."""
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    red = (abs(r - 0xD6) < 20) & (abs(g - 0x27) < 20) & (abs(b - 0x28) < 20)
    return int((red.sum(axis=0) > pixels.shape[0] // 4).sum())


def test_report_writes_pngs_and_html(tmp_path: Path) -> None:
    paths = build_report(snapshots(), alerts(), tmp_path / "report")
    assert set(paths) == {"html", "png_examples", "png_time"}
    for key in ("png_examples", "png_time"):
        pixels = check_png(paths[key])
        assert red_columns(pixels) >= 1, f"{key}: the concept drift line is drawn"
    page = paths["html"].read_text()
    assert 'src="metrics_examples.png"' in page and 'src="metrics_time.png"' in page
    assert "default/lr" in page and "default/tree" in page and "adwin" in page and "error_mean" in page
    assert "amount_&lt;mean&gt;" in page  # escaped
    assert "2 drift alert(s)" in page and "concept 1, feature 1" in page


def test_drift_lines_are_marked_only_when_there_are_alerts(tmp_path: Path) -> None:
    with_alerts = check_png(build_report(snapshots(), alerts(), tmp_path / "a")["png_examples"])
    without = check_png(build_report(snapshots(), [], tmp_path / "b")["png_examples"])
    assert red_columns(with_alerts) >= 1 and red_columns(without) == 0


def test_report_without_data_still_renders(tmp_path: Path) -> None:
    paths = build_report([], [], tmp_path)
    assert "png_time" not in paths
    with Image.open(paths["png_examples"]) as img:
        assert img.format == "PNG"
    page = paths["html"].read_text()
    assert "No metric snapshots." in page and "No drift alerts." in page


def test_report_skips_malformed_messages(tmp_path: Path) -> None:
    snaps: list[Any] = [*snapshots()[:20], "garbage", {"no_model": 1}, {"model": "x", "metrics": {"accuracy": "nan?"}}]
    bad_alerts: list[Any] = [None, {"kind": "concept", "subject": "default/lr"}]
    paths = build_report(snaps, bad_alerts, tmp_path)
    check_png(paths["png_examples"])


def test_headline_puts_the_served_model_against_its_shadows(tmp_path: Path) -> None:
    preds = [{"slot": "default", "model": f"lr@{v}", "produced_ts": T0 + v, "ingest_ts": T0 + v - 0.02}
             for v in range(5)]  # fmt: skip
    promotion = {"v": 1, "kind": "promotion", "slot": "default", "promoted": "tree", "demoted": "lr", "offset": 9}
    paths = build_report(snapshots(), [*alerts(), promotion], tmp_path, predictions=preds)
    page = paths["html"].read_text()
    headline = page[page.index('<section id="headline">'):page.index("</section>")]
    assert "served <b>default/lr</b>" in headline and "<td>shadow</td><td>default/tree</td>" in headline
    assert "trained v19" in headline and "workers serve lr@4" in headline
    assert "1 concept drift(s)" in headline and "1 promotion(s)" in headline
    assert "p50 20.0 ms, p99 20.0 ms over 5 predictions" in headline
    assert "1 data drift alert(s)" in headline
    check_png(paths["png_latency"])


def test_latency_over_time_shows_when_it_was_slow() -> None:
    from streams.ops.report import latency_over_time

    preds = [{"produced_ts": T0 + i, "ingest_ts": T0 + i - (2.0 if 500 <= i < 600 else 0.01)} for i in range(1000)]
    buckets = latency_over_time(preds, buckets=10)
    assert len(buckets) == 10 and sum(n for *_, n in buckets) == 1000
    slow = [i for i, (_, p50, _, _) in enumerate(buckets) if p50 > 1000]
    assert slow == [5]
    assert latency_over_time([{"produced_ts": 1.0}]) == []  # no ingest time: nothing to draw
