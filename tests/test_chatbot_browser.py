"""chatbot.py in a real browser: `streamlit run` as a subprocess, driven by headless Chromium.

Needs Debian's chromium and chromedriver (`apt-get install chromium chromium-driver`; .ci/run
installs them); skipped with that reason when they are missing. Every wait is bounded and the
server is always stopped, so the test ends in well under a minute or fails.
"""

import os
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import ROOT, train_tiny_chat_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Typed into the page: every piece would become formatting, a link or HTML if it were not escaped.
QUESTION = "**bold** [x](http://e) <b>$x$</b> :smile: www.example.com a@b.com 😀 中文?"


@pytest.fixture(scope="module")
def page_args(tmp_path_factory):
    if not (os.path.isfile(CHROMIUM) and os.path.isfile(CHROMEDRIVER)):
        pytest.skip("chromium not installed: apt-get install chromium chromium-driver")
    pytest.importorskip("selenium", reason="selenium not installed: make venv (requirements.txt)")
    return train_tiny_chat_model(tmp_path_factory.mktemp("browser"))[1]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout, what):
    """Poll `condition` until it returns something true; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def server(page_args, tmp_path):
    """`streamlit run chatbot.py` on a free port; yields its URL; always stopped afterwards."""
    port = free_port()
    log = open(tmp_path / "streamlit.log", "w")
    env = {**os.environ, "INF265_CHAT_ARGS": shlex.join(page_args)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "chatbot.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def healthy():
        if proc.poll() is not None:
            output = (tmp_path / "streamlit.log").read_text()
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{output}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, 30, "the streamlit server to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1100", "--lang=en-US"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def png_size(path):
    """(width, height) of a PNG file, read from its header; fails if it is not a PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG file"
    return struct.unpack(">II", data[16:24])


def test_question_typed_in_the_browser_gets_an_answer(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def find(selector, within=None):
        return (within or browser).find_elements(By.CSS_SELECTOR, selector)

    browser.get(server)
    (box,) = wait_for(lambda: find("textarea[data-testid=stChatInputTextArea]"), 30, "the chat input")
    # ChromeDriver types only characters of the Basic Multilingual Plane, so the text (with its
    # emoji) goes in as a user's paste would: the textarea's value, then an input event for React.
    browser.execute_script(
        "const [box, text] = arguments;"
        "Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set.call(box, text);"
        "box.dispatchEvent(new Event('input', {bubbles: true}));", box, QUESTION)
    box.send_keys(Keys.ENTER)

    def answered():
        messages = find("[data-testid=stChatMessage]")
        done = len(messages) == 2 and find("[data-testid=stExpander]", messages[1])
        return messages if done else None

    user, assistant = wait_for(answered, 30, "the assistant's answer and its sampling details")
    assert find("[data-testid=stChatMessageAvatarUser]", user)
    assert find("[data-testid=stChatMessageAvatarAssistant]", assistant)
    text = find("[data-testid=stMarkdownContainer]", user)[0].get_attribute("innerText")
    assert text.replace("\u2060", "") == QUESTION  # shown literally (word joiners are invisible)
    for message in (user, assistant):  # nothing the text contains became formatting or HTML
        body = find("[data-testid=stMarkdownContainer]", message)[0]  # the message text, not the expander
        assert not find("strong, em, a, img, b, code, .katex, h1, li, table", body), body.get_attribute("innerHTML")
    assert "How was this answer sampled?" in assistant.text

    find("[data-testid=stExpander] summary", assistant)[0].click()
    wait_for(lambda: find("[data-testid=stDataFrame]", assistant), 15, "the sampling table")
    time.sleep(1)  # let the table and chart draw before the screenshot
    screenshot = tmp_path / "chatbot.png"
    assert browser.save_screenshot(str(screenshot))
    width, height = png_size(screenshot)
    assert width >= 800 and height >= 600 and screenshot.stat().st_size > 20_000


def test_compare_mode_and_attention_view_in_the_browser(server, browser, tmp_path):
    """Compare strategies (one column per strategy) and the attention heat map, as a user opens
    them; no "Deploy" button; screenshots saved beside the test's files."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def find(selector, within=None):
        return (within or browser).find_elements(By.CSS_SELECTOR, selector)

    browser.get(server)
    (box,) = wait_for(lambda: find("textarea[data-testid=stChatInputTextArea]"), 30, "the chat input")
    assert "Cursed Chatbot" in browser.find_element(By.TAG_NAME, "h1").text
    assert not find("[data-testid=stAppDeployButton]"), "the toolbar offers Streamlit's Deploy button"
    box.send_keys("which is larger, 12 or 7?" + Keys.ENTER)
    def answered():
        messages = find("[data-testid=stChatMessage]")
        return messages[1] if len(messages) == 2 and len(find("[data-testid=stExpander]", messages[1])) == 2 else None

    assistant = wait_for(answered, 30, "the first answer and its two expanders")

    # The attention view: open its expander, switch it on, wait for the heat map.
    (expander,) = [e for e in find("[data-testid=stExpander]", assistant) if "attend" in e.text]
    expander.find_element(By.CSS_SELECTOR, "summary").click()
    switch = ".//label[.//input[@aria-label='{}']]"

    def shown_switch(within, label):
        found = [e for e in within.find_elements(By.XPATH, switch.format(label)) if e.is_displayed()]
        return found[0] if found else None

    wait_for(lambda: shown_switch(expander, "Show attention"), 10, "the Show attention switch").click()
    def heat_map():  # Streamlit redraws the page after the click: look everything up again
        from selenium.common.exceptions import StaleElementReferenceException
        try:
            message = find("[data-testid=stChatMessage]")[1]
            return [c for e in find("[data-testid=stExpander]", message) if "attend" in e.text
                    for c in find("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg", e)]
        except (StaleElementReferenceException, IndexError):
            return None

    wait_for(heat_map, 30, "the attention heat map")
    time.sleep(1)
    attention_png = tmp_path / "attention.png"
    assert browser.save_screenshot(str(attention_png)) and png_size(attention_png)[0] >= 800

    # Compare mode: switch it on in the sidebar, ask again, wait for greedy plus three top-p columns.
    sidebar = find("[data-testid=stSidebar]")[0]
    wait_for(lambda: shown_switch(sidebar, "Compare strategies"), 10, "the Compare strategies switch").click()
    time.sleep(1)
    (box,) = find("textarea[data-testid=stChatInputTextArea]")
    box.send_keys("how do you spell kalomi?" + Keys.ENTER)

    def compared():
        messages = find("[data-testid=stChatMessage]")
        if len(messages) != 4:
            return None
        columns = find("[data-testid=stColumn]", messages[3])
        done = len(columns) == 4 and len(find("[data-testid=stExpander]", messages[3])) == 4
        return columns if done else None

    columns = wait_for(compared, 60, "four answers side by side")
    assert columns[0].text.startswith("greedy")
    assert all("temperature" in c.text and "mean token probability" in c.text for c in columns[1:])
    time.sleep(1)
    compare_png = tmp_path / "compare.png"
    assert browser.save_screenshot(str(compare_png)) and png_size(compare_png)[0] >= 800
