"""Run the Faust worker process: the app from :mod:`streams.runtime.app` plus the Prometheus endpoint."""

from __future__ import annotations

import logging

from faust import Worker
from prometheus_client import start_http_server

from streams.runtime import log_limit
from streams.runtime.app import Runtime, create_app
from streams.settings import Settings

log = logging.getLogger("freshet.worker")


def run_worker(settings: Settings) -> None:
    """Block until the worker is stopped (SIGTERM/SIGINT); /metrics on ``settings.metrics_port``."""
    runtime = Runtime.build(settings)
    app = create_app(runtime)
    start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=runtime.metrics.registry)
    worker = Worker(app, loglevel=settings.log_level.upper(), quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner sets the root logger to DEBUG (Worker._setup_spinner_handler), so every
    # logger.debug() on the hot path in Faust and aiokafka builds a record: 8-10% of the worker's time.
    worker.spinner = None

    @app.task
    async def limit_log_lines() -> None:  # Faust has set up its handlers by the time tasks run
        log_limit.install(on_suppressed=runtime.metrics.log_suppressed.inc)

    worker.execute_from_commandline()
