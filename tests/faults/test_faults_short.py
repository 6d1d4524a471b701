"""The short fault suite inside ``make test``: malformed inputs on every input topic, junk model versions and
a forged snapshot, Redis stopped 8 s and Redis restarted, against the session's broker and a Redis server
of the suite's own (it is stopped and started again by PID). ``make faults`` runs the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.faults.__main__ import report
from tests.faults.harness import Servers
from tests.faults.scenarios import ALL, SHORT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fault_servers(services: Settings) -> Iterator[Servers]:
    with Servers.start(services, own_kafka=False) as servers:
        yield servers


@pytest.mark.timeout(480)  # its waits are bounded; a loaded machine makes them long
@pytest.mark.parametrize("name", SHORT)
def test_fault_scenario_holds(name: str, fault_servers: Servers, tmp_path: Path) -> None:
    result = ALL[name](fault_servers, tmp_path, True)
    print(report(result))
    failed = [f"{check}: {seen}" for check, ok, seen in result.checks if not ok]
    assert not failed, f"{result.name}: " + "; ".join(failed)
