"""Open a local HTML page in headless Chromium, check what a person would see, and take a screenshot.

Chromium is Debian's ``chromium`` (installed with apt-get when missing, like Redis), driven over the
DevTools protocol on a pipe (``--remote-debugging-pipe``: no port, no extra package). The check
collects console errors, uncaught exceptions, failed loads and every image's natural size, reads which
element ids the page has, and captures the whole page as a PNG.

>>> c = PageCheck(url="file:///r.html", screenshot=None, images=[{"src": "a.png", "complete": True, "width": 0}])
>>> c.problems()
['image a.png did not load']
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.errors import FreshetError
from streams.ops import services as svc

# What the brief for headless Chromium as root asks for: no sandbox (root), no GPU, nothing phoning home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)
# A script run in the page after it loaded: images, element ids and the visible text.
_INSPECT = """JSON.stringify({
  title: document.title,
  images: [...document.images].map(i => ({src: i.getAttribute("src"), complete: i.complete,
                                          width: i.naturalWidth, height: i.naturalHeight})),
  ids: [...document.querySelectorAll("[id]")].map(e => e.id),
  text: document.body ? document.body.innerText : ""
})"""


class BrowserError(FreshetError, RuntimeError):
    """Chromium could not be started or did not answer in time."""


@dataclass
class PageCheck:
    """What the browser saw on one page."""

    url: str
    screenshot: Path | None
    title: str = ""
    images: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    text: str = ""
    console_errors: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)
    requests: dict[str, str] = field(default_factory=dict, repr=False)  # request id → url

    def problems(self, require_ids: Sequence[str] = ()) -> list[str]:
        """Everything a person would call broken: errors, images that did not load, missing parts."""
        out = [f"console: {e}" for e in self.console_errors]
        out += [f"failed to load {u}" for u in self.failed_loads]
        out += [f"image {i['src']} did not load" for i in self.images if not i.get("complete") or not i.get("width")]
        out += [f"no element #{i}" for i in require_ids if i not in self.ids]
        return out


def chromium() -> str:
    """Debian's ``chromium`` (installed with apt-get when missing and running as root)."""
    return svc.apt_program("chromium", "chromium")


class _DevTools:
    """The DevTools protocol over Chromium's pipe: NUL-terminated JSON, commands on fd 3, answers on fd 4."""

    def __init__(self, binary: str, profile: Path, width: int, height: int) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium reads fd 3 and writes fd 4: put our pipe ends there in the child only (copied above 10
        # first, in case one of them is 3 or 4 already). Popen closes the others after this runs.
        def child_fds() -> None:
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self._log = (profile / "chromium.log").open("wb")
        args = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                f"--window-size={width},{height}", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=child_fds,
            close_fds=True,
            pass_fds=(3, 4),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 20)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._answers[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self.events.put(msg)
        with self._cond:
            self._cond.notify_all()

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout_s: float = 30.0) -> dict[str, Any]:  # fmt: skip
        self._next_id += 1
        msg_id = self._next_id
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while msg_id not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise BrowserError(f"chromium did not answer {method} within {timeout_s:g} s")
                self._cond.wait(min(left, 0.2))
            answer = self._answers.pop(msg_id)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message', answer['error'])}")
        return dict(answer.get("result", {}))

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self.call("Browser.close", timeout_s=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._to_chrome, self._from_chrome):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()


def check_page(
    page: Path, screenshot: Path | None = None, *, width: int = 1280, height: int = 900, timeout_s: float = 60.0
) -> PageCheck:
    """Load ``page`` (a local HTML file), wait for its load event and for its images, inspect it and,
    when ``screenshot`` is given, write the whole page there as PNG."""
    binary = chromium()
    url = page.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="freshet-chromium-") as profile:
        tools = _DevTools(binary, Path(profile), width, height)
        try:
            return _check(tools, url, screenshot, width, height, timeout_s)
        finally:
            tools.close()


def _check(tools: _DevTools, url: str, screenshot: Path | None, width: int, height: int,
           timeout_s: float) -> PageCheck:  # fmt: skip
    target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        tools.call(f"{domain}.enable", session=session)
    screen = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    tools.call("Emulation.setDeviceMetricsOverride", screen, session=session)
    check = PageCheck(url=url, screenshot=screenshot)
    tools.call("Page.navigate", {"url": url}, session=session)
    deadline = time.monotonic() + timeout_s
    loaded = False
    while not loaded:
        try:
            event = tools.events.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise BrowserError(f"{url} did not finish loading within {timeout_s:g} s") from None
        loaded = event.get("method") == "Page.loadEventFired"
        _note(event, check)
    time.sleep(0.3)  # late console messages of the load
    while not tools.events.empty():
        _note(tools.events.get_nowait(), check)
    found = tools.call("Runtime.evaluate", {"expression": _INSPECT, "returnByValue": True}, session=session)
    seen = json.loads(found["result"]["value"])
    check.title, check.images, check.ids, check.text = seen["title"], seen["images"], seen["ids"], seen["text"]
    metrics = tools.call("Page.getLayoutMetrics", session=session)
    content = metrics.get("cssContentSize") or metrics["contentSize"]
    w, h = max(width, int(content["width"])), int(content["height"])
    check.size = (w, h)
    if screenshot is not None:
        clip = {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}
        params = {"format": "png", "captureBeyondViewport": True, "clip": clip}
        shot = tools.call("Page.captureScreenshot", params, session=session)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    return check


def _note(event: dict[str, Any], check: PageCheck) -> None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        args = params.get("args", [])
        check.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
    elif method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        check.console_errors.append(str(details.get("exception", {}).get("description") or details.get("text")))
    elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        entry = params["entry"]
        check.console_errors.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
    elif method == "Network.requestWillBeSent":
        check.requests[str(params.get("requestId"))] = str(params.get("request", {}).get("url", ""))
    elif method == "Network.loadingFailed" and not params.get("canceled"):
        url = check.requests.get(str(params.get("requestId")), "?")
        check.failed_loads.append(f"{url} ({params.get('errorText', 'error')})")
    elif method == "Network.responseReceived" and int(params.get("response", {}).get("status") or 0) >= 400:
        response = params["response"]
        check.failed_loads.append(f"{response.get('url')} (HTTP {response.get('status')})")
