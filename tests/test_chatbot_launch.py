"""`streamlit run chatbot.py` as a person starts it: on a desktop the page opens in the browser, on a
server (no display) Streamlit only prints the address. The browser is a fake `xdg-open` that notes
the address it was given; no browser is needed."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from helpers import ROOT


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fakes Linux's xdg-open")
@pytest.mark.parametrize("display,opens", [(":0", True), (None, False)], ids=["desktop", "server"])
def test_the_page_opens_the_browser_on_a_desktop_only(tmp_path, display, opens):
    bin_folder, opened = tmp_path / "bin", tmp_path / "opened.txt"
    bin_folder.mkdir()
    fake = bin_folder / "xdg-open"
    fake.write_text(f'#!/bin/sh\necho "$1" >> "{opened}"\n')
    fake.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PATH"] = f"{bin_folder}{os.pathsep}{env['PATH']}"
    if display:
        env["DISPLAY"] = display
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "chatbot.py", "--server.port", str(port),
                                "--", "--preset", "tiny", "--device", "cpu"],
                               cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("the chat page never started")
        time.sleep(3)  # Streamlit opens the browser just after the server is up
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert opened.exists() == opens, output
    if opens:
        assert f"localhost:{port}" in opened.read_text()
    assert "Email" not in output  # never a first-run prompt waiting in the terminal
