"""JupyterLab as a person uses it, in a real browser: after a (CI-sized) study, open a notebook from
`notebooks/`, run every cell with Shift+Enter, and check the kernel, the absence of errors and that a
figure on the page equals the study's metrics.json. Then open the study's reports from disk.

Playwright drives Debian's Chromium (`executable_path`): Playwright's own browser download cannot be
fetched here. `make test` installs Chromium with apt-get when it is missing and it runs as root."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("PETFACE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium not found: `apt-get install chromium` (as root; "
                                                          "`make test` does it), or set PETFACE_CHROMIUM")]
NOTEBOOK = "03_evaluate.ipynb"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def study(finished, tmp_path_factory):
    """A project laid out like this repository (pyproject.toml, params/, notebooks/) whose params use
    relative paths: the shared finished study (tests/conftest.py), copied, with its params as params/ci.yaml."""
    root = tmp_path_factory.mktemp("project") / "study"
    shutil.copytree(finished, root, symlinks=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'a-user-study'\n")
    (root / "params").mkdir()
    (root / "params.yaml").rename(root / "params" / "ci.yaml")
    (root / "notebooks").mkdir()
    nb = json.loads((REPO / "notebooks" / NOTEBOOK).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = re.sub(r'params_path = ".*"', 'params_path = "params/ci.yaml"', "".join(cell["source"]))
    (root / "notebooks" / NOTEBOOK).write_text(json.dumps(nb))
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(study, tmp_path_factory):
    """`jupyter lab` in the project's notebooks/ (as `make lab` starts it) on a free loopback port with a
    token; the project's kernel is the one the runner uses."""
    from petlib.study import kernel_dir

    tmp = tmp_path_factory.mktemp("jupyter")
    port, token = _free_port(), "petface-test-token"
    env = {**os.environ, "JUPYTER_PATH": kernel_dir(), "JUPYTER_CONFIG_DIR": str(tmp / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTER_DATA_DIR": str(tmp / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                             f"--IdentityProvider.token={token}", f"--LabApp.user_settings_dir={tmp / 'settings'}",
                             f"--LabApp.workspaces_dir={tmp / 'workspaces'}", "--LabApp.news_url=",
                             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                             *(["--allow-root"] if os.geteuid() == 0 else [])],
                            cwd=study / "notebooks", env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"jupyter lab exited: {(tmp / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.timeout(600)
def test_notebook_runs_in_jupyterlab_like_the_report(study, lab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, token = lab
    metrics = json.loads((study / "outputs" / "ci" / "eval" / "mnv3-cat" / "metrics.json").read_text())
    cells = json.loads((study / "notebooks" / NOTEBOOK).read_text())["cells"]
    n_code = sum(c["cell_type"] == "code" for c in cells)
    shot = tmp_path / "jupyterlab-03_evaluate.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        kernel = page.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName").first
        kernel.wait_for(timeout=60_000)
        page.wait_for_function("() => !document.querySelector('.jp-Dialog')"
                               " && /petface-study/.test(document.querySelector('.jp-Toolbar-kernelName').textContent)",
                               timeout=60_000)
        page.wait_for_function("() => /Idle/.test(document.querySelector('#jp-main-statusbar').textContent)",
                               timeout=120_000)  # the kernel has started: key presses before it can be lost
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.keyboard.press("Escape")  # command mode, as after opening a notebook
        # Run > Run All Cells, as a user does (pressing Shift+Enter per cell lost presses on a loaded machine)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).first.click()
        # Done when the notebook saved from the page (Ctrl+S) has every code cell executed and the kernel is idle.
        saved = study / "notebooks" / NOTEBOOK
        deadline = time.time() + 300
        while True:
            page.keyboard.press("Control+s")
            time.sleep(1.0)
            code = [c for c in json.loads(saved.read_text())["cells"] if c["cell_type"] == "code"]
            idle = "Idle" in page.locator("#jp-main-statusbar").inner_text()
            if idle and sum(c.get("execution_count") is not None for c in code) >= n_code:
                break
            assert time.time() < deadline, f"cells still running after 300 s: {[c.get('execution_count') for c in code]}"
        page.screenshot(path=str(shot), full_page=False)
        kernel_name = kernel.inner_text()
        tracebacks = [o for c in code for o in c.get("outputs", []) if o["output_type"] == "error"]
        kernelspec = json.loads(saved.read_text())["metadata"]["kernelspec"]["name"]
        # the retrieval table as the page rendered it (saved with the notebook)
        row = next(line for c in code for o in c.get("outputs", []) for line in
                   "".join(o.get("data", {}).get("text/plain", "")).splitlines() if re.search(r"\bRecall@1\s", line))
        browser.close()
    print(f"screenshot: {shot}")
    assert "petface-study" in kernel_name and kernelspec == "petface-study"
    assert not tracebacks, tracebacks[0]["ename"] + ": " + tracebacks[0]["evalue"]
    shown = float(re.search(r"Recall@1\s+([0-9.]+) \[", row).group(1))  # 4 significant digits, then its interval
    assert shown == pytest.approx(float(f"{metrics['retrieval']['recall@1']:.4g}"), abs=1e-12), row


@pytest.mark.timeout(300)
def test_reports_open_from_disk_with_images_and_links(study):
    from playwright.sync_api import sync_playwright

    rep = study / "reports" / "ci"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto((rep / "index.html").as_uri())
        links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        assert {"params.yaml", "03_evaluate-mnv3-cat.html"} <= set(links)
        for href in links:
            assert (rep / href).is_file(), f"index links to {href}, which is not there"
        page.goto((rep / "03_evaluate-mnv3-cat.html").as_uri())
        imgs = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src').slice(0, 22), e.naturalWidth])")
        browser.close()
    assert len(imgs) >= 6
    assert all(src.startswith("data:image/png;base64") and width > 0 for src, width in imgs), imgs
