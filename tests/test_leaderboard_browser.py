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


# -- injection: nothing from the data runs or loads ------------------------------------------------------
PROBE = """(() => {
  const all = [...document.querySelectorAll('*')];
  return {
    pwned: window.__pwned === undefined ? null : window.__pwned,
    scripts: document.scripts.length,
    active: document.querySelectorAll('img,a,iframe,frame,object,embed,svg,math,form,input,button,base,video,audio,'
                                      + 'source,link[rel=stylesheet],meta[http-equiv=refresh],style:not(head style)').length,
    handlers: all.filter(e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on'))).length,
    title: document.title,
  };
})()"""


def requested_urls(b: Browser) -> set[str]:
    return {e["params"]["request"]["url"] for e in b.events if e.get("method") == "Network.requestWillBeSent"}


def settle(b: Browser, ms: int = 300) -> None:
    """Let asynchronous handlers (image errors, timers) run before the page is inspected."""
    b.send("Runtime.evaluate", {"expression": f"new Promise(r => setTimeout(r, {ms}))", "awaitPromise": True})


def test_the_injection_corpus_runs_no_script_and_requests_nothing(tmp_path, browser):
    import leaderboards
    from leaderboards.text import visible
    from test_leaderboard_injection import CORPUS, corpus_board

    lb = corpus_board(tmp_path)
    leaderboards.write_outputs(lb, tmp_path / "out", ("html",))
    page = (tmp_path / "out" / "leaderboard.html").as_uri()
    browser.send("Network.enable")
    browser.navigate(page)
    settle(browser)
    probe = browser.evaluate(PROBE)
    assert probe == {"pwned": None, "scripts": 1, "active": 0, "handlers": 0, "title": lb.board.title}
    assert {u for u in requested_urls(browser) if not u.startswith("data:")} == {page}
    assert browser.errors() == []  # no script error, and no request the page's policy had to block
    shown = browser.evaluate("Array.from(document.querySelectorAll('#ranked tbody tr td:nth-child(2)'))"
                             ".map(td => td.textContent)")
    for label in CORPUS:  # every payload is shown as the text it is
        assert visible(label) in shown, label
    assert "{{ 7*7 }}" in shown and "49" not in shown and "$title ${body} <!--body-->" in shown


def test_the_probe_catches_an_unescaped_page(tmp_path, browser):
    """Guard for the test above: the same checks on a page that renders a payload raw."""
    page = tmp_path / "raw.html"
    page.write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'><title>t</title></head><body><table>"
                    "<tr><td><img src='http://127.0.0.1:9/x.png' onerror='window.__pwned=1'></td></tr></table></body></html>")
    browser.send("Network.enable")
    browser.navigate(page.as_uri())
    settle(browser)
    probe = browser.evaluate(PROBE)
    assert probe["pwned"] == 1 and probe["active"] == 1 and probe["handlers"] == 1
    assert "http://127.0.0.1:9/x.png" in requested_urls(browser)


# -- layout: a 1400 px window, long labels, the twelve terms, intervals -------------------------------------
def fits(b: Browser, width: int) -> dict:
    return b.evaluate(f"""(() => {{
      const cells = [...document.querySelectorAll('td, th')];
      return {{
        inner: window.innerWidth,
        scroll: document.documentElement.scrollWidth,
        tables: [...document.querySelectorAll('table')].map(t => Math.ceil(t.getBoundingClientRect().right)),
        clipped: cells.filter(c => c.scrollWidth > c.clientWidth + 1).length,
      }};
    }})()""")


def test_the_board_fits_a_1400px_window(tmp_path, browser):
    import leaderboards
    from test_leaderboard_bootstrap import write_run

    runs = tmp_path / "runs"
    write_run(runs / "target", "target", "none", 0.9, 0.9, 0.6, 0.49, seed=0)
    long_word = "npo_gdr_klr-" + "x" * 150
    write_run(runs / "a0", long_word, "npo_gdr_klr", 0.2, 0.7, 0.1, 0.47, seed=0)
    write_run(runs / "a1", long_word, "npo_gdr_klr", 0.25, 0.7, 0.1, 0.47, seed=1)
    write_run(runs / "b", "a very long label with many words " * 6, "gradient_difference", 0.3, 0.6, 0.2, 0.46)
    write_run(runs / "merge", "zjuklab_merge", "zjuklab_merge", 0.15, 0.75, 0.05, 0.47)
    write_run(runs / "merge" / "parents" / "over", "zjuklab:over " + "y" * 80, "npo_gdr_klr", 0.05, 0.5, 0.0, 0.45)
    write_run(runs / "low", "gradient_ascent " + "z" * 60, "gradient_ascent", 0.0, 0.1, 0.0, 0.25)
    [(_, lb)] = leaderboards.build_leaderboards([runs], "semeval2025", bootstrap=50, progress=False, columns="terms")
    assert lb.parents and lb.excluded and len(lb.board.columns) == 17
    assert any(e.ci and e.n_seeds == 2 for e in lb.entries)
    leaderboards.write_outputs(lb, tmp_path / "out", ("html",))
    browser.send("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 900, "deviceScaleFactor": 1,
                                                        "mobile": False})
    browser.navigate((tmp_path / "out" / "leaderboard.html").as_uri())
    layout = fits(browser, 1400)
    assert layout["inner"] == 1400
    assert layout["scroll"] <= 1400, layout
    assert max(layout["tables"]) <= 1400 and len(layout["tables"]) == 3, layout
    assert layout["clipped"] == 0, layout
    assert browser.errors() == []


def test_the_injection_corpus_with_the_terms_fits_a_1400px_window(tmp_path, browser):
    import leaderboards
    from test_leaderboard_injection import corpus_board

    lb = corpus_board(tmp_path, columns="terms")
    leaderboards.write_outputs(lb, tmp_path / "out", ("html",))
    browser.send("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 900, "deviceScaleFactor": 1,
                                                        "mobile": False})
    browser.navigate((tmp_path / "out" / "leaderboard.html").as_uri())
    layout = fits(browser, 1400)
    assert layout["scroll"] <= 1400 and max(layout["tables"]) <= 1400 and layout["clipped"] == 0, layout
