"""The harness itself, proven on a plain ipywidgets notebook (no geowidgets code involved)."""

from __future__ import annotations

import pytest
from labdriver import allowed_url, nonblank_fraction, open_lab_page, pixel_difference


def test_allowed_url_keeps_only_loopback() -> None:
    assert allowed_url("http://127.0.0.1:1234/lab?token=x")
    assert allowed_url("ws://localhost:1234/api/kernels/abc/channels")
    assert allowed_url("data:image/png;base64,AAAA")
    assert allowed_url("blob:http://127.0.0.1:1234/0f0e")
    assert not allowed_url("https://cdn.jsdelivr.net/npm/x.js")
    assert not allowed_url("http://10.0.0.1/")
    assert not allowed_url("http://127.0.0.1.example.com/")


def test_smoke_notebook_slider_redraws_and_reaches_kernel(lab) -> None:
    lab.open_notebook("smoke.ipynb")
    lab.run_all()
    output = lab.page.locator(".jp-OutputArea-output", has_text="harness ok 42")
    output.wait_for()
    box = lab.page.locator(".gw-smoke")
    box.wait_for()
    image = box.locator("img")
    image.wait_for()
    lab.wait_until("() => { const i = document.querySelector('.gw-smoke img'); return i && i.naturalWidth > 0; }")
    before = lab.pixels(image)
    assert nonblank_fraction(before) > 0.02, "the widget image is blank"
    assert lab.kernel_value("slider.value") == 10

    handle = box.locator(".gw-smoke-slider .noUi-handle")
    handle.focus()
    for _ in range(5):
        handle.press("ArrowRight")
    lab.wait_kernel_value("slider.value", lambda v: v == 15)
    lab.page.wait_for_timeout(300)
    after = lab.pixels(image)
    for _ in range(20):  # the new PNG arrives over the websocket after the trait change
        if pixel_difference(before, after) > 0.01:
            break
        lab.page.wait_for_timeout(250)
        after = lab.pixels(image)
    assert pixel_difference(before, after) > 0.01, "moving the slider did not change the drawing"
    assert nonblank_fraction(after) > nonblank_fraction(before), "a larger radius must cover more pixels"
    lab.screenshot("harness_smoke", box)


def test_recorder_catches_an_external_request(browser, lab_server, tmp_path) -> None:
    """A page that asks for a non-local URL must fail the checks (the request is blocked, not sent)."""
    with pytest.raises(AssertionError, match="requests left 127.0.0.1/localhost"):
        with open_lab_page(browser, lab_server, "recorder_self_test", tmp_path) as lab:
            lab.page.goto(f"{lab_server.base_url}/api/status?token={lab_server.token}")
            lab.page.goto("about:blank")  # the API page's CSP would stop the fetch before the network layer
            lab.page.evaluate("() => fetch('https://example.invalid/x.js').catch(() => null)")
            lab.page.wait_for_timeout(200)
    assert (tmp_path / "recorder_self_test.requests.txt").read_text().count("example.invalid") == 1
