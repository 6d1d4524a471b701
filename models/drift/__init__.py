"""Drift detection: concept drift on error streams, distribution drift on windows, alerts and policies.

Pure code (no Kafka, Faust or Redis): the learner and the monitors' agents feed values in and publish the
:class:`DriftAlert` values that come out.

- :mod:`models.drift.concept` — :class:`ConceptDriftMonitor` (ADWIN, Page-Hinkley, KSWIN, DDM family).
- :mod:`models.drift.distribution` — PSI / KS, :class:`WindowDriftMonitor`, :class:`FeatureDriftMonitors`.
- :mod:`models.drift.alerts` — :class:`DriftAlert`, the ``drift`` topic's message.
- :mod:`models.drift.policy` — :class:`DriftPolicy`, :class:`ExampleBuffer`, :func:`decide`, :func:`retrain`.
- :mod:`models.drift.config` — :class:`DriftConfig`, the ``[drift]`` section of the pipeline spec.
"""

from __future__ import annotations

from models.drift.alerts import DriftAlert
from models.drift.concept import DETECTORS, ConceptDriftMonitor, build_detector
from models.drift.config import ConceptConfig, DriftConfig, DriftConfigError, WindowConfig
from models.drift.distribution import (
    FeatureDriftMonitors,
    WindowDriftMonitor,
    ks_statistic,
    psi,
    psi_categorical,
    quantile_edges,
)
from models.drift.policy import Action, DriftPolicy, ExampleBuffer, decide, retrain

__all__ = [
    "DETECTORS",
    "Action",
    "ConceptConfig",
    "ConceptDriftMonitor",
    "DriftAlert",
    "DriftConfig",
    "DriftConfigError",
    "DriftPolicy",
    "ExampleBuffer",
    "FeatureDriftMonitors",
    "WindowConfig",
    "WindowDriftMonitor",
    "build_detector",
    "decide",
    "ks_statistic",
    "psi",
    "psi_categorical",
    "quantile_edges",
    "retrain",
]
