"""The report page in a real browser (Debian's headless ``chromium``, installed when missing): the checker
passes a good report and catches a page broken on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from streams.ops.browser import check_page
from streams.ops.report import build_report
from streams.ops.report_cli import REPORT_PARTS
from tests.unit.ops.test_report import T0, alerts, snapshots


def predictions() -> list[dict[str, object]]:
    return [{"v": 1, "id": f"e{i}", "slot": "default", "model": f"lr@{i // 4000}", "produced_ts": T0 + i * 0.01,
             "ingest_ts": T0 + i * 0.01 - (0.004 if i % 100 else 0.2)} for i in range(20_000)]  # fmt: skip


def test_a_report_opens_cleanly_and_shows_its_parts(tmp_path: Path) -> None:
    paths = build_report(snapshots(), alerts(), tmp_path / "r", predictions=predictions())
    shot = tmp_path / "shot.png"
    check = check_page(paths["html"], shot)
    assert check.problems(REPORT_PARTS) == []
    assert {Path(i["src"]).name for i in check.images} == {"metrics_examples.png", "metrics_time.png", "latency.png"}
    assert all(i["width"] >= 600 for i in check.images)
    assert "served default/lr" in check.text and "workers serve lr@4" in check.text
    assert "1 concept drift(s)" in check.text
    with Image.open(shot) as img:
        assert img.width >= 1280 and img.height > 1500  # the whole page, not the first screen
        pixels = np.asarray(img.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100


def test_a_page_broken_on_purpose_is_caught(tmp_path: Path) -> None:
    paths = build_report(snapshots(), alerts(), tmp_path / "r")
    page = paths["html"].read_text()
    page = page.replace('src="metrics_time.png"', 'src="gone.png"').replace('id="drift-alerts"', 'id="other"')
    page = page.replace("</body>", "<script>console.error('boom'); undefinedFunction();</script></body>")
    paths["html"].write_text(page)
    problems = check_page(paths["html"]).problems(REPORT_PARTS)
    assert "image gone.png did not load" in problems
    assert "no element #drift-alerts" in problems
    assert "console: boom" in problems
    assert any("undefinedFunction is not defined" in p for p in problems)
    assert any(p.startswith("failed to load file://") and "gone.png" in p for p in problems)
