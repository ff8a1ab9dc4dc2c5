"""The deployment's run form in the Prefect UI, V1 and V2: how tall it is and how many fields it has.

    .venv/bin/python benchmarks/run_form.py --label after --screenshot docs/run-form.png
    git archive REV | tar -x -C /tmp/old && .venv/bin/python benchmarks/run_form.py --checkout /tmp/old --label before

Starts `prefect server start` on SQLite, applies deployment smar-pipeline/default with the
parameters `prefect deploy` gives it (prefect.yaml's build step: the params file's values), opens
its run page in headless Chromium, 1400 px wide, in each UI, and counts the page's height in
pixels (the tallest scrolling element) and its labelled fields (every label, as a user scrolls
past them; the parameters are those less the page's own: run name, schema switch, start).
`--checkout` measures another checkout's flow (an older commit's, say). Writes
benchmarks/results/run_form.json (one entry per label) and run_form.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE_LABELS = {"Run Name", "Enforce Parameter Schema", "Validate parameters", "Start"}
UI_PATHS = {"v1": "", "v2": "/v2"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="The checkout whose flow and params.yaml to use.")
    parser.add_argument("--label", default="current")
    parser.add_argument("--screenshot", type=Path, help="Save the V2 form here (PNG).")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    sys.path.insert(0, str(args.checkout.resolve()))
    sys.path.insert(1, str(ROOT))  # tests.servers, tests.browser
    state = Path(tempfile.mkdtemp(prefix="smar-run-form-"))
    os.environ.update({"PREFECT_HOME": str(state / "client")})
    from tests.servers import start_prefect

    server = start_prefect(f"sqlite+aiosqlite:///{state / 'prefect.db'}", state / "server", state)
    os.environ["PREFECT_API_URL"] = server.url
    try:
        deployment_id = apply_deployment(args.checkout.resolve())
        measured = {
            ui: measure(
                f"{server.url.removesuffix('/api')}{path}/deployments/deployment/{deployment_id}/run", state, ui
            )
            for ui, path in UI_PATHS.items()
        }
        if args.screenshot:
            screenshot(
                f"{server.url.removesuffix('/api')}/v2/deployments/deployment/{deployment_id}/run",
                state,
                args.screenshot,
                measured["v2"]["height_px"],
            )
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)  # the server's database and the browser profiles
    write_results(args.results, args.label, measured)


def apply_deployment(checkout: Path) -> str:
    from smar.core.process import setup

    setup()
    from smar.pipeline.flow import smar_pipeline

    try:
        from smar.pipeline.form import deployment_parameters
    except ImportError:  # a checkout from before the form had a module of its own
        from smar.pipeline.flow import deployment_parameters
    os.chdir(checkout)  # as `prefect deploy` runs: from the checkout, with its relative paths
    parameters = deployment_parameters("params.yaml", "data", "outputs")
    return str(smar_pipeline.to_deployment(name="default", parameters=parameters).apply())


def _open_form(browser, url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 120).until(
        lambda b: b.find_elements(By.XPATH, "//label[normalize-space()='outputs_dir (Optional)']")
    )
    time.sleep(2)  # the last sections lay out after the first labels show


def measure(url: str, state: Path, ui: str) -> dict:
    from selenium.webdriver.common.by import By

    from tests.browser import chromium

    with chromium(state / f"profile-{ui}") as browser:
        _open_form(browser, url)
        height = browser.execute_script(
            "return Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))"
        )
        labels = [label.text.strip() for label in browser.find_elements(By.TAG_NAME, "label")]
    parameters = [label for label in labels if label not in PAGE_LABELS]
    return {"height_px": height, "labelled_fields": len(labels), "parameter_fields": len(parameters), "fields": labels}


def screenshot(url: str, state: Path, path: Path, height: int) -> None:
    from tests.browser import chromium

    with chromium(state / "profile-screenshot") as browser:
        browser.set_window_size(1400, height + 120)
        _open_form(browser, url)
        browser.save_screenshot(str(path))


def write_results(results: Path, label: str, measured: dict) -> None:
    results.mkdir(parents=True, exist_ok=True)
    path = results / "run_form.json"
    everything = json.loads(path.read_text()) if path.exists() else {}
    everything[label] = measured
    path.write_text(json.dumps(everything, indent=2) + "\n")
    lines = [
        "# The run form of deployment smar-pipeline/default (benchmarks/run_form.py)",
        "",
        "Chromium 1400 px wide; height: the page's tallest scrolling element; fields: its labels.",
        "",
        "| checkout | UI | height (px) | labelled fields | parameter fields |",
        "|---|---|---|---|---|",
    ]
    for name, uis in everything.items():
        for ui, numbers in uis.items():
            lines.append(
                f"| {name} | {ui} | {numbers['height_px']} | {numbers['labelled_fields']} | "
                f"{numbers['parameter_fields']} |"
            )
    (results / "run_form.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
