"""The two UIs users work in, in Debian's Chromium: a run launched from the Prefect UI's form
completes on the worker; a `champion` moved by hand in the MLflow UI is recorded and rolled back."""

import re

import pytest
import yaml

from tests.browser import chromium
from tests.production.conftest import WORKER_MODEL, wait_for_run
from tests.servers import BIN, run_cli

pytestmark = pytest.mark.slow


def button(scope, text: str):
    """The button in `scope` whose label is `text`."""
    from selenium.webdriver.common.by import By

    [found] = [b for b in scope.find_elements(By.TAG_NAME, "button") if b.text.strip() == text]
    return found


def form_field(browser, label: str):
    """A field of Prefect's parameter form, found by its label."""
    from selenium.webdriver.common.by import By

    return browser.find_element(
        By.XPATH,
        f"//*[normalize-space(text())='{label} (Optional)']/ancestor::div[contains(@class,'schema-form-property ')][1]",
    )


def run_from_the_form(browser, run_page: str, kind: str, epochs: int) -> dict[str, str]:
    """Open the deployment's run form, change model.kind and train.epochs, and submit it; what
    the form showed for them before (the params file's values)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(run_page)
    WebDriverWait(browser, 60).until(
        lambda b: b.find_elements(By.XPATH, "//*[normalize-space(text())='Epochs (Optional)']")
    )
    kind_select = Select(form_field(browser, "Kind").find_element(By.TAG_NAME, "select"))
    epochs_input = form_field(browser, "Epochs").find_element(By.TAG_NAME, "input")
    shown = {
        "kind": kind_select.first_selected_option.get_attribute("value"),
        "epochs": epochs_input.get_attribute("value"),
    }
    kind_select.select_by_value(kind)
    epochs_input.send_keys(
        Keys.END, str(epochs), Keys.HOME, *[Keys.DELETE] * len(shown["epochs"])
    )  # typed after the old value, which is then deleted: never empty
    button(browser, "Submit").click()
    WebDriverWait(browser, 60).until(
        lambda b: "tab=Runs" in b.current_url
    )  # back on the deployment's page, at its runs
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
    directory, _ = worker_host
    with topology.prefect_api() as api:
        deployment = api.get("/deployments/name/smar-pipeline/default").raise_for_status().json()
    run_page = f"{topology.prefect.url.removesuffix('/api')}/deployments/deployment/{deployment['id']}/run"
    with topology.prefect_api() as api:
        earlier = set(deployment_runs(api, deployment["id"]))
        with chromium(tmp_path / "profile") as browser:
            shown = run_from_the_form(browser, run_page, kind="text_only", epochs=2)
        [run_id] = set(deployment_runs(api, deployment["id"])) - earlier
        run = wait_for_run(api, run_id)
    file = yaml.safe_load((directory / "params.yaml").read_text())
    assert shown == {
        "kind": file["model"]["kind"],
        "epochs": str(file["train"]["epochs"]),
    }  # the form started from the file
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["parameters"]["config"]["model"]["kind"] == "text_only"

    client = topology.client()
    [tracked] = client.search_runs(
        [client.get_experiment_by_name("smar").experiment_id], f"tags.`prefect.flow_run_id` = '{run_id}'"
    )
    params = tracked.data.params
    assert params["model.kind"] == "text_only" and params["train.epochs"] == "2"  # the form's values
    assert (
        float(params["train.learning_rate"]) == file["train"]["learning_rate"]
    )  # the file's, where the form was silent
    [version] = client.search_model_versions(f"name='{WORKER_MODEL}' and run_id='{tracked.info.run_id}'")
    assert version.tags["gate.decision"] in ("promoted", "rejected") and version.tags["smar.state"] == "registered"


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
    move_champion(client, name, first, expected=None, reason="the gate's choice", by="gate")

    with chromium(tmp_path / "profile") as browser:
        move_champion_in_the_mlflow_ui(browser, f"{topology.mlflow.url}/#/models/{name}/versions/{second}")
    assert current_champion(client, name) == second

    settings = yaml.safe_load(tiny_params.read_text())
    settings["register"]["model_name"] = name
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(settings))
    env = topology.host_env(tmp_path / "home")
    history = run_cli([str(BIN / "smar"), "registry", "history", "--params", str(params)], env)
    assert re.search(rf"v{second}\s+<- v{first}\s+outside ", history), history  # the hand-made move, on record
    rolled = run_cli(
        [str(BIN / "smar"), "registry", "rollback", "--params", str(params), "--reason", "moved by mistake"], env
    )
    assert f"rolled back to version {first} (from {second})" in rolled
    assert current_champion(client, name) == first
