"""``freshet watch`` and ``freshet report`` against a running worker and learner, read off a real screen.

``freshet watch`` runs as a terminal program: in a pseudo-terminal of our own, whose output a minimal
VT100 screen below replays (always), and in a detached tmux session read with ``capture-pane`` (when tmux
is installed). So the live view is checked where it is drawn, with rich's cursor movements, and the test
never skips for want of tmux.
"""

from __future__ import annotations

import codecs
import fcntl
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest
from PIL import Image

from producers.publish import publish
from producers.synthetic import SyntheticStream
from streams.ops.readers import read_until
from streams.ops.watch_view import SPARK_CHARS
from streams.settings import Settings
from tests.integration.loop_helpers import learner_url, running, wait_metric, with_ports

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "pipelines" / "demo.toml"
COLS, ROWS = 160, 60
N_EVENTS = 2000
BAD_EVERY = 400  # 4 malformed messages, one of each kind producers.publish.BAD_EVENTS sends


# --- terminals ----------------------------------------------------------------------------------------


class Screen:
    """A minimal VT100 screen: text, CR/LF/BS, cursor moves, erase in line/display, scrolling.

    That is all ``rich.live.Live`` writes (colours and cursor visibility are ignored).

    >>> s = Screen(10, 3)
    >>> s.feed("one\\r\\ntwo\\r\\n\\x1b[1A\\x1b[2K\\x1b[1A\\x1b[2K\\x1b[31mTWO\\x1b[0m")
    >>> s.text()
    'TWO'
    """

    _TOKEN = re.compile(
        r"\x1b\[([0-9;?]*)([@-~])"  # CSI: cursor moves, erasing, colours
        r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window title and the like
        r"|\x1b[^\[\]]|[\r\n\b]|[^\x1b\r\n\b]+"
    )

    def __init__(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self.grid = [[" "] * cols for _ in range(rows)]
        self.r = self.c = 0
        self._pending = ""

    def feed(self, data: str) -> None:
        data = self._pending + data
        self._pending = ""
        pos = 0
        while pos < len(data):
            m = self._TOKEN.match(data, pos)
            if m is None:  # an escape sequence cut off at the end of this chunk
                self._pending = data[pos:]
                return
            pos = m.end()
            token = m.group(0)
            if m.group(2) is not None:
                self._csi(m.group(1), m.group(2))
            elif token == "\r":
                self.c = 0
            elif token == "\n":
                self._line_feed()
            elif token == "\b":
                self.c = max(0, self.c - 1)
            elif not token.startswith("\x1b"):
                for ch in token:
                    if ch < " ":
                        continue
                    if self.c >= self.cols:
                        self.c = 0
                        self._line_feed()
                    self.grid[self.r][self.c] = ch
                    self.c += 1

    def _line_feed(self) -> None:
        if self.r == self.rows - 1:
            self.grid.pop(0)
            self.grid.append([" "] * self.cols)
        else:
            self.r += 1

    def _csi(self, params: str, final: str) -> None:
        nums = [int(p) if p.isdigit() else 0 for p in params.lstrip("?").split(";")] if params else []
        n = max(1, nums[0]) if nums else 1
        if final == "A":
            self.r = max(0, self.r - n)
        elif final == "B":
            self.r = min(self.rows - 1, self.r + n)
        elif final == "C":
            self.c = min(self.cols - 1, self.c + n)
        elif final == "D":
            self.c = max(0, self.c - n)
        elif final == "G":
            self.c = min(self.cols - 1, n - 1)
        elif final in "Hf":
            self.r = min(self.rows - 1, n - 1)
            self.c = min(self.cols - 1, max(1, nums[1]) - 1) if len(nums) > 1 else 0
        elif final == "K":
            mode = nums[0] if nums else 0
            row = self.grid[self.r]
            lo, hi = {0: (self.c, self.cols), 1: (0, self.c + 1)}.get(mode, (0, self.cols))
            row[lo:hi] = [" "] * (hi - lo)
        elif final == "J":
            mode = nums[0] if nums else 0
            first = self.r + 1 if mode == 0 else 0
            if mode == 0:
                self.grid[self.r][self.c :] = [" "] * (self.cols - self.c)
            for i in range(first, self.rows):
                self.grid[i] = [" "] * self.cols

    def text(self) -> str:
        return "\n".join("".join(row).rstrip() for row in self.grid).strip("\n")


class Terminal(Protocol):
    name: str

    def screen(self) -> str: ...


class PtyTerminal:
    """A command in a pseudo-terminal of COLS x ROWS; a thread replays its output on a :class:`Screen`."""

    name = "pty"

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO,
                                     start_new_session=True)
        os.close(slave)
        self._master = master
        self._screen = Screen(COLS, ROWS)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the program exited and the pty closed
                break
            if not chunk:
                break
            with self._lock:
                self._screen.feed(decoder.decode(chunk))

    def screen(self) -> str:
        with self._lock:
            return self._screen.text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        os.close(self._master)


class TmuxTerminal:
    """A command in a detached tmux session on a private server (its own socket), read with capture-pane."""

    name = "tmux"

    def __init__(self, argv: list[str], env: dict[str, str], tmp: Path) -> None:
        self.tmux = shutil.which("tmux") or "tmux"
        self.socket = f"freshet-test-{uuid.uuid4().hex[:8]}"
        conf = tmp / "tmux.conf"
        # remain-on-exit: the last frame stays readable if the program ends before we look.
        conf.write_text("set-option -g remain-on-exit on\nset-option -g status off\n")
        changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
        command = shlex.join(["env", *(f"{k}={v}" for k, v in sorted(changed.items())), *argv])
        subprocess.run([self.tmux, "-L", self.socket, "-f", str(conf), "new-session", "-d", "-s", "watch",
                        "-x", str(COLS), "-y", str(ROWS), "-c", str(REPO), command], check=True, timeout=30)

    def screen(self) -> str:
        out = subprocess.run([self.tmux, "-L", self.socket, "capture-pane", "-p", "-t", "watch"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip("\n")

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


@contextmanager
def terminals(argv: list[str], env: dict[str, str], tmp: Path) -> Iterator[list[Terminal]]:
    """The watch in a pty, and also in tmux when tmux is installed; all closed on exit."""
    with ExitStack() as stack:
        pty_term = PtyTerminal(argv, env)
        stack.callback(pty_term.close)
        opened: list[Terminal] = [pty_term]
        if shutil.which("tmux"):
            tmux_term = TmuxTerminal(argv, env, tmp)
            stack.callback(tmux_term.close)
            opened.append(tmux_term)
        yield opened


# --- reading the screen ----------------------------------------------------------------------------


def dead_letters_shown(screen: str) -> int | None:
    m = re.search(r"dead letters (\d+)", screen)
    return int(m.group(1)) if m else None


def throughput_shown(screen: str) -> float | None:
    m = re.search(r"throughput ([\d,]+) events/s", screen)
    return float(m.group(1).replace(",", "")) if m else None


def model_line(screen: str, model: str) -> str:
    return next((line for line in screen.splitlines() if model in line), "")


def wait_for(
    terms: list[Terminal], done: Callable[[Terminal, str], bool], timeout_s: float
) -> dict[str, str]:
    """Read every terminal's screen until ``done(terminal, screen)`` holds for all; returns the screens."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, str] = {}
    pending = list(terms)
    while pending and time.monotonic() < deadline:
        for term in list(pending):
            last[term.name] = term.screen()
            if done(term, last[term.name]):
                pending.remove(term)
        time.sleep(0.3)
    assert not pending, "\n\n".join(f"--- {t.name} screen ---\n{last.get(t.name, '')}" for t in pending)
    return last


def freshet(s: Settings, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **s.to_env(), "COLUMNS": str(COLS)}
    return subprocess.run([sys.executable, "-m", "streams", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout_s)


# --- the test ---------------------------------------------------------------------------------------


def test_watch_shows_the_running_system_and_report_draws_it(settings: Settings, tmp_path: Path) -> None:
    # Metric snapshots every 0.25 s (not the default 1 s): the stream takes a few seconds, and each model's
    # trend needs at least 10 of them however fast the worker runs.
    s = with_ports(settings, spec=SPEC, snapshot_every=500, metrics_every_s=0.25)
    stream = SyntheticStream(kind="hyperplane", n_events=N_EVENTS, n_entities=50, seed=11,
                             start_ts=time.time() - N_EVENTS * 0.01, step_s=0.01)
    argv = [sys.executable, "-m", "streams", "watch", "--from-beginning", "--refresh-s", "0.5", "--duration-s", "150"]
    env = {**os.environ, **s.to_env(), "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS),
           "PYTHONUNBUFFERED": "1"}

    with running(s, logs=tmp_path / "logs"), terminals(argv, env, tmp_path) as terms:
        # The default --worker-url follows FRESHET_METRICS_PORT, which is the worker's.
        wait_for(terms, lambda t, screen: f"worker http://127.0.0.1:{s.metrics_port}/metrics: up" in screen, 60)

        stats = publish(s, stream, rate_per_s=300, bad_every=BAD_EVERY)  # ~7 s: trends of ~25 snapshots
        assert stats.bad == N_EVENTS // BAD_EVERY - 1

        def busy(term: Terminal, screen: str) -> bool:
            # While predictions flow: a rate, and the latency of the predictions made since the last scrape.
            return (throughput_shown(screen) or 0.0) > 0 and re.search(r"latency p50 \d+\.\d ms", screen) is not None

        wait_for(terms, busy, 60)
        assert wait_metric(learner_url(s), "freshet_examples_learned_total", N_EVENTS, 90) == N_EVENTS

        snapshots = read_until(s, "metrics", done=lambda r: False, timeout_s=2)
        models = sorted({v["model"] for _, v, _ in snapshots})
        assert models, "the learner published metric snapshots"
        dead = read_until(s, "dead-letter", done=lambda r: len(r) >= stats.bad, timeout_s=30)
        assert len(dead) >= stats.bad

        def caught_up(term: Terminal, screen: str) -> bool:
            # Every model at the last example, with its trend, and every dead letter counted.
            return dead_letters_shown(screen) == len(dead) and all(
                f"{N_EVENTS:,}" in model_line(screen, m) for m in models
            )

        screens = wait_for(terms, caught_up, 60)
        for name, screen in screens.items():
            for model in models:
                spark = [c for c in model_line(screen, model) if c in SPARK_CHARS]
                assert len(spark) >= 10, f"{name}: no sparkline for {model}:\n{screen}"

        once = freshet(s, "watch", "--once", "--from-beginning", "--refresh-s", "2")
        assert once.returncode == 0, once.stderr
        assert all(m in once.stdout for m in models) and dead_letters_shown(once.stdout) == len(dead)
        assert "\x1b" not in once.stdout, "--once prints plain text"

    # The worker is gone now: the view says so instead of failing.
    down = freshet(s, "watch", "--once", "--from-beginning", "--refresh-s", "1")
    assert down.returncode == 0, down.stderr
    assert f"worker unreachable at http://127.0.0.1:{s.metrics_port}/metrics" in down.stdout
    assert all(m in down.stdout for m in models)

    out = tmp_path / "report"
    rep = freshet(s, "report", "--out", str(out), "--timeout-s", "30")
    assert rep.returncode == 0, rep.stderr
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} == {"metrics_examples.png", "metrics_time.png", "latency.png"}
    printed = rep.stdout.splitlines()
    assert {str(p) for p in pngs} | {str(out / "report.html")} <= set(printed), rep.stdout
    page = (out / "report.html").read_text(encoding="utf-8")
    for png in pngs:
        assert png.name in page
        with Image.open(png) as img:
            pixels = np.asarray(img.convert("RGB"))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200
        colours = np.unique(pixels.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32))
        assert len(colours) > 10, f"{png.name} is blank"
    assert all(m in page for m in models)

    empty = freshet(s.with_(topic_prefix=f"{s.topic_prefix}nothing-"), "report", "--out", str(tmp_path / "none"),
                    "--timeout-s", "2")
    assert empty.returncode == 2
    assert len(empty.stderr.strip().splitlines()) == 1 and "no metric snapshots" in empty.stderr
