"""A view's own progress: a determinate bar while the amount of work is known, gone when idle.

The notebook's model holds the capture after 600 of 2,000 samples until the test releases it,
so the embedding's status line shows its bar for as long as the test needs. Screenshots:
``progress_capture.png`` (the held capture), ``progress_statusbar.png`` (a StatusBar's bar),
``progress_done.png``.
"""

from __future__ import annotations

EMBEDDING = '[data-gw-view="embedding"]'


def _bar(lab, root_selector: str) -> dict | None:
    return lab.page.evaluate(
        "(sel) => { const root = document.querySelector(sel); if (!root) return null;"
        " const status = root.querySelector('.gw-status'); const bar = status && status.querySelector('.gw-progress');"
        " if (!bar) return {status: status ? status.dataset.status : null, text: status ? status.textContent : null};"
        " const fill = bar.querySelector('.gw-progress-fill'); const r = bar.getBoundingClientRect();"
        " return {status: status.dataset.status, role: bar.getAttribute('role'),"
        " now: bar.getAttribute('aria-valuenow'), min: bar.getAttribute('aria-valuemin'),"
        " max: bar.getAttribute('aria-valuemax'), fill: fill.getBoundingClientRect().width / r.width,"
        " width: r.width, height: r.height, text: status.textContent,"
        " spinner: getComputedStyle(status, '::before').content}; }",
        root_selector,
    )


def test_capture_progress_bar_then_idle(module_lab) -> None:
    lab = module_lab
    lab.open_notebook("progress.ipynb")
    lab.run_all(timeout=300)
    assert lab.wait_kernel_value("view.progress", lambda p: p == 0.3, timeout=120) == 0.3
    assert lab.kernel_value("view.message") == "captured 600 / 2,000 samples…"
    lab.wait_until(
        f"() => {{ const b = document.querySelector('{EMBEDDING} .gw-status .gw-progress[role=\"progressbar\"]');"
        " return !!b && b.getAttribute('aria-valuenow') === '30'; }",
        what="the capture's determinate bar at 30%",
    )
    bar = _bar(lab, EMBEDDING)
    assert bar is not None and bar["role"] == "progressbar", bar
    assert (bar["now"], bar["min"], bar["max"]) == ("30", "0", "100"), bar
    assert bar["status"] == "busy"
    assert "captured 600 / 2,000 samples" in bar["text"] and "30%" in bar["text"], bar
    assert bar["spinner"] in ("none", "normal"), bar  # the bar replaces the spinner
    assert bar["height"] <= 10 and bar["width"] >= 40, bar  # thin, and wide enough to read
    lab.page.wait_for_timeout(400)  # the fill's width transition
    bar = _bar(lab, EMBEDDING)
    assert abs(bar["fill"] - 0.3) < 0.05, bar
    assert lab.kernel_value("session.captured") is False
    root = lab.page.locator(EMBEDDING).first
    lab.screenshot("progress_capture", root)

    # The StatusBar (the status line of the bokeh views) draws the same bar.
    sb = ".gw-test-bar"
    lab.wait_until(
        f"() => !!document.querySelector('{sb} .gw-progress[aria-valuenow=\"40\"]')", what="the StatusBar's bar"
    )
    sbar = _bar(lab, sb)
    assert sbar["role"] == "progressbar" and "2 of 5 steps" in sbar["text"], sbar
    lab.screenshot("progress_statusbar", lab.page.locator(sb).first)
    lab.kernel_exec("bar.progress = -1")  # unknown: the spinner again
    lab.wait_until(
        f"() => {{ const s = document.querySelector('{sb} .gw-status');"
        " return !!s && !s.querySelector('.gw-progress') && s.dataset.status === 'busy'; }",
        what="the StatusBar's spinner",
    )
    assert _bar(lab, sb)["text"] == "2 of 5 steps…"

    lab.kernel_exec("model.release.set()")
    lab.kernel_exec("assert view.wait(120), view.message")
    lab.wait_drawn(root)
    lab.wait_until(
        f"() => {{ const s = document.querySelector('{EMBEDDING} .gw-status');"
        " return !!s && !s.querySelector('.gw-progress') && s.dataset.status === 'idle'; }",
        what="the bar to disappear once idle",
    )
    assert lab.kernel_value("[view.status, view.progress, session.captured]") == ["idle", -1.0, True]
    lab.screenshot("progress_done", root)
    lab.assert_clean()
