"""The two UIs users work in, in Debian's Chromium: the Prefect UI's run form (V1 and V2) starts
from the params file, and a run launched from it completes on the worker; a `champion` moved by
hand in the MLflow UI is recorded and rolled back."""

import re

import pytest
import yaml

from smar.registry.gate import NOT_DISTINGUISHABLE, PROMOTED, REJECTED
from tests.browser import chromium
from tests.production.conftest import WORKER_MODEL, wait_for_run
from tests.servers import BIN, run_cli

VERDICTS = (PROMOTED, REJECTED, NOT_DISTINGUISHABLE)  # what the gate decides on a run's version

pytestmark = pytest.mark.slow


def button(scope, text: str):
    """The button in `scope` whose label is `text`."""
    from selenium.webdriver.common.by import By

    [found] = [b for b in scope.find_elements(By.TAG_NAME, "button") if b.text.strip() == text]
    return found


def v1_field(browser, parameter: str):
    """The input of a flow parameter in the V1 UI's run form, found by its label."""
    from selenium.webdriver.common.by import By

    block = browser.find_element(
        By.XPATH,
        f"//*[normalize-space(text())='{parameter} (Optional)']"
        "/ancestor::div[contains(concat(' ', @class, ' '), ' schema-form-property ')][1]",
    )
    return block.find_element(By.CSS_SELECTOR, "select, input, textarea")


def v2_field(browser, parameter: str):
    """The input of a flow parameter in the V2 UI's run form: the one its label is for."""
    from selenium.webdriver.common.by import By

    label = browser.find_element(By.XPATH, f"//label[normalize-space()='{parameter} (Optional)']")
    return browser.find_element(By.ID, label.get_attribute("for"))


def open_form(browser, run_page: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(run_page)
    WebDriverWait(browser, 60).until(
        lambda b: b.find_elements(By.XPATH, "//*[normalize-space(text())='overrides (Optional)']")
    )


def shown_in_the_v1_form(browser, run_page: str) -> dict[str, str]:
    """What the V1 UI's run form shows for model_kind and epochs."""
    from selenium.webdriver.support.ui import Select

    open_form(browser, run_page)
    return {
        "model_kind": Select(v1_field(browser, "model_kind")).first_selected_option.get_attribute("value"),
        "epochs": v1_field(browser, "epochs").get_attribute("value"),
    }


def run_from_the_v2_form(browser, run_page: str, kind: str, epochs: int, overrides: str) -> dict[str, str]:
    """Open the deployment's run form in the V2 UI, pick model_kind, type epochs and overrides, and
    submit it; what the form showed for them before (the params file's values)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    open_form(browser, run_page)
    wait = WebDriverWait(browser, 60)
    kind_picker, epochs_input = v2_field(browser, "model_kind"), v2_field(browser, "epochs")
    editor = wait.until(lambda b: v2_field(b, "overrides").find_element(By.CSS_SELECTOR, "[contenteditable=true]"))
    shown = {
        "model_kind": kind_picker.text.strip(),
        "epochs": epochs_input.get_attribute("value"),
        "overrides": editor.text,
    }
    kind_picker.click()
    [option] = wait.until(
        lambda b: [o for o in b.find_elements(By.CSS_SELECTOR, "[role=option]") if o.text.strip() == kind]
    )
    option.click()
    epochs_input.send_keys(
        Keys.END, str(epochs), Keys.HOME, *[Keys.DELETE] * len(shown["epochs"])
    )  # typed after the old value, which is then deleted: never empty
    editor.click()
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys(Keys.DELETE, overrides)
    assert (kind_picker.text.strip(), epochs_input.get_attribute("value"), editor.text) == (
        kind,
        str(epochs),
        overrides,
    )
    button(browser, "Submit").click()
    wait.until(lambda b: "tab=Runs" in b.current_url)  # back on the deployment's page, at its runs
    return shown


def deployment_runs(api, deployment_id: str) -> list[str]:
    runs = (
        api.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}})
        .raise_for_status()
        .json()
    )
    return [run["id"] for run in runs]


def test_a_run_submitted_from_the_prefect_ui_form_completes_with_its_overrides(
    worker_run, worker_host, topology, tmp_path
):
    """Both UIs' forms start from the params file; the run is submitted from the V2 UI (the default)."""
    directory, _ = worker_host
    with topology.prefect_api() as api:
        deployment = api.get("/deployments/name/smar-pipeline/default").raise_for_status().json()
    ui, page = topology.prefect.url.removesuffix("/api"), f"deployments/deployment/{deployment['id']}/run"
    with topology.prefect_api() as api:
        earlier = set(deployment_runs(api, deployment["id"]))
        with chromium(tmp_path / "profile") as browser:
            shown_v1 = shown_in_the_v1_form(browser, f"{ui}/{page}")
            shown_v2 = run_from_the_v2_form(
                browser, f"{ui}/v2/{page}", kind="text_only", epochs=2, overrides='{"train": {"weight_decay": 0.02}}'
            )
        [run_id] = set(deployment_runs(api, deployment["id"])) - earlier
        run = wait_for_run(api, run_id)
    file = yaml.safe_load((directory / "params.yaml").read_text())
    from_the_file = {"model_kind": file["model"]["kind"], "epochs": str(file["train"]["epochs"])}
    assert shown_v1 == from_the_file and shown_v2 == {**from_the_file, "overrides": "{}"}  # both start from the file
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert (run["parameters"]["model_kind"], run["parameters"]["epochs"]) == ("text_only", 2)

    client = topology.client()
    [tracked] = client.search_runs(
        [client.get_experiment_by_name("smar").experiment_id], f"tags.`prefect.flow_run_id` = '{run_id}'"
    )
    params = tracked.data.params
    assert (params["model.kind"], params["train.epochs"], params["train.weight_decay"]) == ("text_only", "2", "0.02")
    assert (
        float(params["train.learning_rate"]) == file["train"]["learning_rate"]
    )  # the file's, where the form was not changed
    [version] = client.search_model_versions(f"name='{WORKER_MODEL}' and run_id='{tracked.info.run_id}'")
    assert version.tags["gate.decision"] in VERDICTS and version.tags["smar.state"] == "registered"


def move_champion_in_the_mlflow_ui(browser, version_page: str) -> None:
    """What a user does on a version's page: Edit aliases, type `champion`, Save aliases."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(version_page)
    wait = WebDriverWait(browser, 60)
    editor = (
        "button[data-component-id*='modelversionviewaliaseditor']"  # "Add", or the pencil when the version has aliases
    )
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, editor))
    browser.find_element(By.CSS_SELECTOR, editor).click()
    dialog = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "[role=dialog]"))
    dialog.find_element(By.CSS_SELECTOR, "input[role=combobox]").send_keys("champion", Keys.ENTER)
    save = dialog.find_element(By.CSS_SELECTOR, "button[data-component-id='mlflow.edit-aliases-modal.save-button']")
    wait.until(lambda b: save.is_enabled())
    save.click()
    wait.until(lambda b: not b.find_elements(By.CSS_SELECTOR, "[role=dialog]"))


def test_champion_moved_in_the_mlflow_ui_is_recorded_and_rolled_back(topology, tmp_path, tiny_params):
    import uuid

    from smar.registry.promotion import current_champion, move_champion

    client, name = topology.client(), f"ui-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    run = client.create_run(client.get_experiment_by_name("Default").experiment_id).info.run_id
    first, second = (
        str(client.create_model_version(name, source=f"runs:/{run}/model-{n}", run_id=run).version) for n in range(2)
    )
    gated = move_champion(client, name, first, expected=None, reason="the gate's choice", by="gate")

    with chromium(tmp_path / "profile") as browser:
        move_champion_in_the_mlflow_ui(browser, f"{topology.mlflow.url}/#/models/{name}/versions/{second}")
    assert current_champion(client, name) == second

    settings = yaml.safe_load(tiny_params.read_text())
    settings["register"]["model_name"] = name
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(settings))
    env = topology.host_env(tmp_path / "home")
    history = run_cli([str(BIN / "smar"), "registry", "history", "--params", str(params)], env)
    moved = re.search(rf"v{second}\s+<- v{first}\s+outside\s+moved after (\S+), by (\S+) \(when noticed\)", history)
    assert moved, history  # the hand-made move, on record, between the gate's move and when it was noticed
    gate_move = gated["promoted_at"]
    assert moved.group(1) == gate_move and moved.group(2) >= gate_move
    rolled = run_cli(
        [str(BIN / "smar"), "registry", "rollback", "--params", str(params), "--reason", "moved by mistake"], env
    )
    assert f"rolled back to version {first} (from {second})" in rolled
    assert current_champion(client, name) == first
