"""Debian's headless Chromium, driven over the Chrome DevTools protocol (JSON messages on a WebSocket).

The protocol is Chromium's own: no WebDriver and no browser build of a test
framework's, only the system's ``chromium`` (``make chromium-setup`` installs
it) and ``websocket-client``. A test starts it, loads a page, reads the DOM
with ``evaluate`` as often as it likes (so it sees the page change), and takes
screenshots of a fixed size. The browser runs in its own process group, killed
whole on ``close``.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

# A cold start of Chromium on a loaded 2-core machine takes a few seconds.
START_TIMEOUT_S = 30.0
# One protocol call; evaluating a few DOM reads takes milliseconds.
CALL_TIMEOUT_S = 30.0


class ChromiumError(RuntimeError):
    pass


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless browser with one page of ``width`` x ``height`` CSS pixels (screenshots are that size)."""

    def __init__(self, folder: Path, width: int = 1280, height: int = 1000) -> None:
        self.folder = folder
        self.width, self.height = width, height
        self._ids = itertools.count(1)
        self._process: subprocess.Popen | None = None
        self._socket: websocket.WebSocket | None = None

    def start(self) -> Chromium:
        binary = chromium_binary()
        if binary is None:
            raise ChromiumError("chromium is not installed: `make chromium-setup` installs it (apt-get, as root)")
        profile = self.folder / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--hide-scrollbars", "--mute-audio", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                f"--window-size={self.width},{self.height}", "about:blank"]
        if os.geteuid() == 0:
            argv.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.log_path = self.folder / "chromium.log"
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
        # With port 0 Chromium picks one and writes it to the profile's DevToolsActivePort.
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise ChromiumError(f"chromium exited ({self._process.returncode}):\n{self.log()}")
            text = port_file.read_text() if port_file.exists() else ""
            if text.strip():
                port = int(text.splitlines()[0])
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                        targets = json.load(answer)
                    page = next(t for t in targets if t.get("type") == "page")
                    break
                except (OSError, StopIteration, ValueError):
                    pass
            if time.monotonic() > deadline:
                raise ChromiumError(f"chromium gave no DevTools page in {START_TIMEOUT_S:g} s:\n{self.log()}")
            time.sleep(0.2)
        # No Origin header: Chromium refuses DevTools connections from origins it was not told to allow.
        self._socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=CALL_TIMEOUT_S,
                                                   suppress_origin=True)
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return self

    def call(self, method: str, **params: Any) -> dict:
        """One protocol command and its result (events that arrive meanwhile are dropped)."""
        assert self._socket is not None, "start() first"
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise ChromiumError(f"{method}: {message['error']}")
                return message.get("result", {})

    def navigate(self, url: str, timeout: float = 30.0) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", timeout)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited), as JSON gives it."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise ChromiumError(f"{expression[:200]}: {details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float) -> Any:
        """The first truthy value of ``expression``, evaluated every 0.2 s; an error after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise ChromiumError(f"not true after {timeout:g} s: {expression}")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> bytes:
        """A PNG of the page's viewport, written to ``path``."""
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._process is not None:
            try:
                os.killpg(self._process.pid, signal.SIGTERM)
                self._process.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            try:  # what is left of its group: renderers and helpers, or a browser that would not stop
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._process.wait(5)
            self._process = None

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.close()
