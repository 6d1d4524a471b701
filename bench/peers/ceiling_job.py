"""The ceiling as a child process (project venv): ``python -m bench.peers.ceiling_job CONFIG_JSON``.

``bench.run.passthrough``: aiokafka ``getmany(2000)`` → ``await producer.send()`` per message, no job; it
copies bytes until stopped (SIGTERM) and reports its first consumption like the peers do.
"""

from __future__ import annotations

import asyncio
import sys

import orjson

from bench.peers.job import Status
from bench.run import passthrough
from streams.settings import Settings


def main(config: dict[str, object]) -> None:
    status = Status(str(config["status"]))
    host, _, port = str(config["bootstrap"]).rpartition(":")
    settings = Settings(kafka_host=host, kafka_port=int(port), start_services=False)
    status.write("ready")
    asyncio.run(passthrough(settings, str(config["events"]), str(config["output"]), 10**12, status.consumed))


if __name__ == "__main__":
    main(orjson.loads(sys.argv[1]))
