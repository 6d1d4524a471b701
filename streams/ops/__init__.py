"""Operator tooling: the ``freshet`` CLI and what it drives.

``cli`` (the command line), ``services`` and ``procs`` (start Kafka, Redis, Prometheus and freshet's
processes), ``demo``, ``watch``/``watch_view`` (the live terminal view), ``report``/``report_cli`` and
``browser`` (the HTML report, checked in Chromium), ``summary``, ``readers`` (topic readers), ``freshness``
(the data-freshness experiment), ``monitoring`` (Prometheus rules and dashboards), ``warmstart``.
May import the runtime; nothing below imports this package.
"""
