"""The one reader of Prometheus' text exposition in freshet: ``prometheus_client``'s own parser.

:func:`scrape` reads a ``/metrics`` page into ``{sample key: value}``, a key being the sample's name and
labels as exposed (``freshet_events_total{stage="predict"}``); :func:`parse_key` splits a key back into the
name and its labels. ``freshet watch``, the demo, the process helpers and the tests all read ``/metrics``
through here.

>>> samples = parse_exposition('# TYPE freshet_events counter\\nfreshet_events_total{stage="predict"} 7.0\\n'
...                            'freshet_worker_ready 1\\n')
>>> samples
{'freshet_events_total{stage="predict"}': 7.0, 'freshet_worker_ready': 1.0}
>>> parse_key('freshet_events_total{stage="predict"}'), parse_key("freshet_worker_ready")
(('freshet_events_total', {'stage': 'predict'}), ('freshet_worker_ready', {}))
"""

from __future__ import annotations

import re
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["parse_exposition", "parse_key", "sample_key", "scrape"]

_KEY = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def sample_key(name: str, labels: dict[str, str]) -> str:
    """The key of one sample: ``name{label="value",...}`` (labels in exposition order; quotes escaped)."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def parse_exposition(text: str) -> dict[str, float]:
    """Prometheus text exposition → ``{sample key: value}``."""
    return {
        sample_key(s.name, s.labels): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """The ``/metrics`` page at ``url`` as ``{sample key: value}`` (raises ``OSError`` when unreachable)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return parse_exposition(resp.read().decode())


def parse_key(key: str) -> tuple[str, dict[str, str]]:
    """A sample key (from :func:`sample_key`) back into its metric name and labels."""
    m = _KEY.match(key.strip())
    if m is None:
        return key, {}
    labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(m.group(2) or "")}
    return m.group(1), labels


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
