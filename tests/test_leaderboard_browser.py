"""The HTML leaderboard in a real headless Chromium (Debian's ``chromium`` package).

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (JSON messages
separated by NUL bytes on file descriptors 3 and 4), with the standard library only. The test
installs nothing: it skips when /usr/bin/chromium is absent (CI's ``.ci/run`` provides it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from test_leaderboard import RECORDS

CHROMIUM = Path(os.environ.get("UNLEARNBENCH_CHROMIUM", "/usr/bin/chromium"))

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is not installed")]


class Browser:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="unlearnbench-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_fds() -> None:  # in the child: the protocol reads fd 3 and writes fd 4
            r, w = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(r, 3)
            os.dup2(w, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--no-first-run", "--no-default-browser-check", "--mute-audio", "--window-size=1600,1000",
             f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds, close_fds=False)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session = None

    def _read_message(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._from_child], [], [], remaining)
            if ready:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read_message(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.send(domain)

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page exception: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed + released) in the middle of the element."""
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                            "e.scrollIntoView({block: 'center', inline: 'center'}); "
                            "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1})

    def errors(self) -> list[str]:
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                out.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                out.append(json.dumps(params.get("args", []))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
                out.append(params["entry"].get("text", ""))
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser():
    b = Browser()
    try:
        b.open_page()
        yield b
    finally:
        b.close()


def labels(b: Browser, table: str = "ranked") -> list[str]:
    return b.evaluate(f"Array.from(document.querySelectorAll('#{table} tbody tr')).map(r => r.dataset.label)")


def test_html_board_loads_shows_every_entry_and_sorts_on_header_click(tmp_path, browser):
    import leaderboards

    [(_, lb)] = leaderboards.build_leaderboards([RECORDS], "semeval2025", bootstrap=0, progress=False)
    leaderboards.write_outputs(lb, tmp_path, ("html",))
    browser.navigate((tmp_path / "leaderboard.html").as_uri())

    assert browser.evaluate("document.title") == lb.board.title
    assert labels(browser) == ["zjuklab_merge", "npo", "graddiff", "rmu", "target"]
    assert labels(browser, "excluded") == ["gradascent"]
    assert browser.evaluate("document.querySelector('#excluded tbody tr').className") == "excluded"
    assert browser.evaluate("document.querySelector('#excluded .badge').textContent") == "excluded"

    by = {e.display_label: e.values for e in lb.ranked}

    def header(metric: str) -> str:
        return f"#ranked th[data-metric='{metric}']"

    browser.click(header("mmlu"))  # best first: highest MMLU first
    expected = sorted(by, key=lambda k: -by[k]["mmlu"])
    assert labels(browser) == expected
    assert labels(browser) != ["zjuklab_merge", "npo", "graddiff", "rmu", "target"]
    browser.click(header("mmlu"))  # again: reversed
    assert labels(browser) == expected[::-1]
    browser.click(header("mia_auc"))  # a target column: closest to 0.5 first
    assert labels(browser) == sorted(by, key=lambda k: abs(by[k]["mia_auc"] - 0.5))
    browser.click("#ranked th:first-child")  # rank: ascending, the unranked reference last
    assert labels(browser) == ["zjuklab_merge", "npo", "graddiff", "rmu", "target"]
    assert browser.errors() == []


def test_the_console_error_check_can_fail(tmp_path, browser):
    """Guard for the test above: a page with a script error is caught by ``errors()``."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head><body>"
                    "<script>console.error('boom'); undefinedFunction();</script></body></html>")
    browser.navigate(page.as_uri())
    errors = browser.errors()
    assert any("boom" in e for e in errors) and any("undefinedFunction" in e for e in errors)
