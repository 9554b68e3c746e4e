"""Headless Chromium driven through the DevTools protocol over a pipe, for tests that type and click.

`--remote-debugging-pipe`: JSON messages ending in a NUL byte, commands on Chromium's fd 3, answers
and events on its fd 4; no driver package is needed.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path


class Browser:
    """Headless Chromium and one page, spoken to through the DevTools protocol over a pipe."""

    def __init__(self, chromium: str, profile: Path):
        commands_read, self.commands = os.pipe()
        self.answers, answers_write = os.pipe()
        # The child must find the pipes at fds 3 and 4: copies above 10 first, so that dup2 clobbers nothing.
        child_ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, answers_write)]
        os.close(commands_read)
        os.close(answers_write)

        def at_three_and_four() -> None:
            os.dup2(child_ends[0], 3)
            os.dup2(child_ends[1], 4)

        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             f"--user-data-dir={profile}", "--window-size=1100,900", "about:blank"],
            preexec_fn=at_three_and_four, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for fd in child_ends:
            os.close(fd)
        self.messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self.answers, 65536):
            buffer += chunk
            *whole, buffer = buffer.split(b"\0")
            for message in whole:
                self.messages.put(json.loads(message))

    def call(self, method: str, session: bool = False, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        while True:
            answer = self.messages.get(timeout=60)
            if answer.get("id") == self.next_id:
                assert "error" not in answer, answer
                return answer["result"]
            self.events.append(answer)

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = next((e for e in self.events if e.get("method") == event), None)
            if found is not None:
                self.events.remove(found)
                return found
            self.events.append(self.messages.get(timeout=max(0.1, deadline - time.monotonic())))

    def evaluate(self, expression: str):
        """The expression's value in the page (devtools' evaluation is not the page's own script: no policy stops it)."""
        answer = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        assert "exceptionDetails" not in answer, answer
        return answer["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                            f" return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", session=True, type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def console(self) -> list[dict]:
        """Every console message, uncaught exception and browser log warning or error (a blocked load, a policy
        violation). The browser's own info notes are left out: Chromium sometimes notes that it skipped `autofocus`
        because something else already had the focus, depending on timing (it failed one suite run in four)."""
        while not self.messages.empty():
            self.events.append(self.messages.get())
        kinds = ("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded")
        return [e for e in self.events if e.get("method") in kinds and not (
            e["method"] == "Log.entryAdded" and e.get("params", {}).get("entry", {}).get("level") in ("verbose", "info"))]

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        os.close(self.commands)
