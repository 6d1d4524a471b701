"""The peers' own virtualenv: Quix Streams and Bytewax never enter the project's ``.venv``.

Created on the first ``make bench`` under ``.cache/bench-peers-venv`` and reused while its stamp (the
sha256 of :data:`REQUIREMENTS` and the Python version) matches; the peer jobs in ``bench/peers/`` run
in it as subprocesses.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from pathlib import Path

# Pinned to what the research note measured (peers-2026-12-01.md); river as in the project (0.26.x),
# so the pickled model loads in every system. confluent-kafka comes with both peers.
REQUIREMENTS = (
    "quixstreams==3.28.1",
    "bytewax==0.21.1",
    "river>=0.26,<0.27",
    "orjson>=3.9",
)
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".cache" / "bench-peers-venv"


def stamp_text(requirements: tuple[str, ...] = REQUIREMENTS) -> str:
    """What the stamp file holds: a digest of the requirements and the interpreter's version.

    >>> stamp_text(("a==1",)) == stamp_text(("a==1",)), stamp_text(("a==1",)) == stamp_text(("a==2",))
    (True, False)
    """
    body = "\n".join(requirements) + f"\npython {platform.python_version()}\n"
    return hashlib.sha256(body.encode()).hexdigest()


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_peers_venv(venv: Path = DEFAULT_DIR, *, quiet: bool = True) -> Path:
    """The peers venv's python, creating or refreshing the venv when its stamp does not match."""
    stamp = venv / ".bench-stamp"
    want = stamp_text()
    if stamp.exists() and stamp.read_text().strip() == want and python_of(venv).exists():
        return python_of(venv)
    print(f"bench: creating the peers' virtualenv in {venv} ({', '.join(REQUIREMENTS)})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python_of(venv)), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("--quiet")
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    stamp.write_text(want + "\n")
    return python_of(venv)


if __name__ == "__main__":
    print(ensure_peers_venv(quiet=False))
