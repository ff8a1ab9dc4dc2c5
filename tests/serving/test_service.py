"""`smar serve` over real HTTP: search, health, version, images, and following the alias.

One tiny model is trained once and registered as several versions of its own registered
model (so the pipeline tests' `smar-retriever` is never touched). The service runs in a
uvicorn thread on a free port and polls the registry every 0.2 s.
"""

import gc
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageStat
from typer.testing import CliRunner

from smar import cli
from smar.core import tracking
from smar.core.config import SmarConfig, load_config
from smar.core.paths import ModelFiles, Paths
from smar.data.dataset import dvc_directory_md5
from smar.pipeline import steps
from smar.registry.register import log_version
from smar.serving.app import create_app
from smar.traffic.dataset import from_logs, normalise, query_id
from smar.traffic.interleaving import logged_outcomes
from smar.traffic.log import SearchLog, hash_user, read_log
from smar.traffic.shoppers import simulate
from tests.browser import chromium
from tests.conftest import PROJECT
from tests.servers import running

pytestmark = pytest.mark.slow
MODEL_NAME = "serving-test"


@pytest.fixture(scope="module")
def trained(tiny_data, tiny_params, tmp_path_factory) -> tuple[SmarConfig, Paths]:
    config = load_config(tiny_params)
    paths = Paths(tiny_data, tmp_path_factory.mktemp("serving") / "outputs")
    for name in ("validate", "featurize", "train", "export", "index"):
        steps.run_step(name, config, paths)  # train tracked: the versions below are logged in its run
    return config, paths


def register_version(
    paths: Paths, model_dir: Path | None = None, index_dir: Path | None = None, name: str = MODEL_NAME
) -> str:
    mlflow = tracking.configure()
    with mlflow.start_run(run_id=tracking.run_id_of(paths.model.root)):
        return log_version(name, model_dir or paths.model.root, index_dir or paths.index.root)


def point_alias(version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", version)


@pytest.fixture(scope="module")
def search_log(tmp_path_factory):
    """The module's service logs into this."""
    log = SearchLog(tmp_path_factory.mktemp("search-log"), max_bytes=1 << 20, max_seconds=3600).start()
    yield log
    log.close()


@pytest.fixture(scope="module")
def service(trained, search_log):
    """(base url, follower, {"first", "second", "broken"} versions); champion starts on the first."""
    from smar.serving.follower import AliasFollower

    config, paths = trained
    versions = {"first": register_version(paths), "second": register_version(paths)}
    broken = paths.outputs / "broken-model"
    shutil.copytree(paths.model.root, broken)
    for served in (ModelFiles(broken).weights, ModelFiles(broken).query_onnx):  # ONNX encodes the queries when present
        served.write_bytes(b"not a model")
    versions["broken"] = register_version(paths, broken)
    point_alias(versions["first"])

    settings = config.serve.model_copy(update={"poll_seconds": 0.2, "explore_share": 0.0})
    follower = AliasFollower(MODEL_NAME, settings.alias, settings.poll_seconds)
    follower.start()
    with running(create_app(follower, settings, search_log)) as url:
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, "the first version to load")
        yield url, follower, versions
    follower.stop()


def wait_for(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_health_readiness_and_version(service, trained):
    url, _, versions = service
    _, paths = trained
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz").json()
    assert ready == {"ready": True, "model_version": versions["first"], "problems": {}}
    info = httpx.get(f"{url}/version").json()
    assert (
        info["model_name"] == MODEL_NAME and info["model_version"] == versions["first"] and info["alias"] == "champion"
    )
    assert info["data_hash"] == dvc_directory_md5(paths.data)
    assert info["git_commit"] and info["run_id"] == tracking.run_id_of(paths.model.root)


def scrape(url: str) -> dict[tuple, float]:
    """GET /metrics, as {(sample name, labels...): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_what_was_served_under_the_documented_names(service, trained):
    url, follower, _ = service
    before = scrape(url)
    for query in ("mug", "red scarf", "wool"):
        assert httpx.post(f"{url}/search", json={"query": query, "k": 3}).status_code == 200
    assert httpx.post(f"{url}/search", json={"query": ""}).status_code == 422
    after = scrape(url)

    def grew(name: str, **labels) -> float:
        key = (name, *sorted(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("smar_requests_total", route="/search", status="200") == 3
    assert grew("smar_requests_total", route="/search", status="422") == 1
    assert grew("smar_request_duration_seconds_count", route="/search") == 4
    assert grew("smar_queue_duration_seconds_count") == 3 and grew("smar_batch_size_sum") == 3
    assert grew("smar_encode_duration_seconds_count") >= 1 and grew("smar_search_duration_seconds_count") >= 1
    version = follower.current.version
    assert after[("smar_model_info", ("alias", "champion"), ("model_name", MODEL_NAME), ("version", version))] == 1
    items = len(pd.read_parquet(trained[1].data / "items.parquet"))
    assert after[("smar_index_items", ("view", "multimodal"))] == items
    deadline = time.monotonic() + 10  # the log's thread writes them a moment later
    while grew("smar_log_records_total", kind="searches") < 3:
        assert time.monotonic() < deadline, "the three searches never reached the log's count"
        time.sleep(0.1)
        after = scrape(url)
    page = (PROJECT / "docs" / "serving.md").read_text()
    table = page[page.index("## Metrics") :].split("\n\n")[2]  # the section's table: one metric (or two) a row
    documented = {name for row in table.splitlines()[2:] for name in re.findall(r"`(smar_\w+)`", row.split("|")[1])}
    assert len(documented) == 16
    exported = {name for name, *_ in after}
    for name in documented:  # a histogram exports _bucket, _count and _sum
        assert name in exported or f"{name}_count" in exported, f"{name} is documented but not exported"


def test_search_returns_titled_items_with_fetchable_images(service, trained):
    url, _, versions = service
    _, paths = trained
    items = pd.read_parquet(paths.data / "items.parquet").set_index("item_id")
    response = httpx.post(f"{url}/search", json={"query": "red striped mug", "k": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == versions["first"] and body["index"] in {"multimodal", "text"}
    results = body["results"]
    assert len(results) == 7 and [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    for result in results:
        assert result["title"] == items.at[result["item_id"], "title"]
        assert result["image_url"] == f"/images/{result['item_id']}"
    image = httpx.get(url + results[0]["image_url"])  # the thumbnail inside the version: no dataset needed
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    thumbnail = Image.open(io.BytesIO(image.content))
    original = Image.open(paths.data / items.at[results[0]["item_id"], "image"]).convert("RGB")
    assert thumbnail.format == "JPEG" and max(thumbnail.size) <= SmarConfig().index.thumbnail_size
    assert thumbnail.size == original.size  # never enlarged: the tiny catalog's images are smaller
    difference = ImageChops.difference(thumbnail.convert("RGB"), original)
    # JPEG at quality 75 of a 32 px image is off by about 12 a channel on average; another item's image by far more
    assert max(ImageStat.Stat(difference).mean) < 16, "the thumbnail is not the item's image"
    assert httpx.get(f"{url}/images/no-such-item").status_code == 404


def send(url: str, body) -> httpx.Response:
    """POST `body`: bytes as they are, anything else as JSON."""
    return httpx.post(url, content=body) if isinstance(body, bytes) else httpx.post(url, json=body)


def assert_refused(response: httpx.Response, complaint: str, hinted: str) -> None:
    assert response.status_code == 422, response.text
    assert complaint in response.json()["error"] and hinted in response.json()["hint"]


@pytest.mark.parametrize(
    "body, complaint",
    [
        ({"query": ""}, "query: String should have at least 1 character"),
        ({"query": " \t "}, "query: is blank"),
        ({"query": "x" * 257}, "query: String should have at most 256 characters"),
        ({"query": "mug", "k": 0}, "k: Input should be greater than or equal to 1"),
        ({"query": "mug", "k": 101}, "k: Input should be less than or equal to 100"),
        ({"query": "mug", "k": "10"}, "k: Input should be a valid integer"),
        ({"query": 5}, "query: Input should be a valid string"),
        ({"k": 3}, "query: Field required"),
        ({"query": "mug", "limit": 3}, "limit: Extra inputs are not permitted"),
        ([1, 2], "body: Input should be a valid dictionary"),
        (b"{not json", "body: not JSON"),
        (b'{"query": "caf\xe9"}', "body: not JSON"),
        (b'{"query": "\\ud800"}', "query: "),
    ],
)
def test_bad_requests_get_422_naming_the_field(service, body, complaint):
    url, _, _ = service
    assert_refused(send(f"{url}/search", body), complaint, '"query"')


def logged(search_log: SearchLog, kind: str, search_ids: set[str], rows: int | None = None):
    """The `rows` records (default: one a search) of `kind` of these searches, once all are on disk
    (the log syncs every second)."""
    records = None

    def all_there() -> bool:
        nonlocal records
        table = read_log(search_log.directory, kind).records
        records = table[table["search_id"].isin(search_ids)]
        return len(records) == (rows or len(search_ids))

    wait_for(all_there, f"{kind} of {sorted(search_ids)} in the log", seconds=10)
    return records.reset_index(drop=True)


def test_every_search_is_logged_with_what_it_showed(service, search_log):
    url, _, _ = service
    request = {"query": "red striped mug", "k": 5, "session_id": "s-1", "user_id": "alice@example.com"}
    body = httpx.post(f"{url}/search", json=request).json()
    assert len(body["search_id"]) == 32
    [row] = logged(search_log, "searches", {body["search_id"]}).to_dict("records")
    assert (row["query"], row["k"], row["session_id"], row["explored"]) == ("red striped mug", 5, "s-1", False)
    assert row["user_hash"] == hash_user("alice@example.com") and "alice" not in json.dumps(row, default=str)
    assert (row["model_name"], row["model_version"], row["index"]) == (MODEL_NAME, body["model_version"], body["index"])
    assert list(row["item_ids"]) == [hit["item_id"] for hit in body["results"]]  # position 1 first
    assert list(row["scores"]) == pytest.approx([hit["score"] for hit in body["results"]], abs=1e-5)
    assert row["host"] == socket.gethostname()


def test_events_one_or_a_list_are_accepted_and_logged(service, search_log):
    url, _, _ = service
    search = httpx.post(f"{url}/search", json={"query": "blue lamp", "k": 3}).json()
    search_id, [first, second, _] = search["search_id"], [hit["item_id"] for hit in search["results"]]
    one = httpx.post(f"{url}/events", json={"search_id": search_id, "item_id": first, "event": "click", "position": 1})
    assert (one.status_code, one.json()) == (202, {"accepted": 1})
    more = [
        {"search_id": search_id, "item_id": second, "event": "click", "position": 2, "session_id": "s-2"},
        {"search_id": search_id, "item_id": second, "event": "purchase"},
    ]
    assert httpx.post(f"{url}/events", json=more).json() == {"accepted": 2}
    events = logged(search_log, "events", {search_id}, rows=3)
    assert events[["item_id", "event"]].values.tolist() == [[first, "click"], [second, "click"], [second, "purchase"]]
    assert events["position"].tolist()[:2] == [1, 2] and pd.isna(events["position"][2])


GOOD_EVENT = {"search_id": "S1", "item_id": "I1", "event": "click"}


@pytest.mark.parametrize(
    "body, complaint",
    [
        ({"item_id": "I1", "event": "click"}, "search_id: Field required"),
        (GOOD_EVENT | {"event": "clik"}, "event: Input should be 'click', 'add_to_cart' or 'purchase'"),
        (GOOD_EVENT | {"position": 0}, "position: Input should be greater than or equal to 1"),
        (GOOD_EVENT | {"when": 1}, "when: Extra inputs are not permitted"),
        ([GOOD_EVENT, {"search_id": "S1", "event": "click"}], "1.item_id: Field required"),
        ([], "send 1 to 1000 events, not 0"),
        ([GOOD_EVENT] * 1001, "send 1 to 1000 events, not 1001"),
        (b"{not json", "body: not JSON"),
    ],
)
def test_bad_events_get_422_naming_the_field(service, body, complaint):
    url, _, _ = service
    assert_refused(send(f"{url}/events", body), complaint, '"event"')


def test_explored_searches_show_k_of_the_top_2k_in_random_order(service, trained, tmp_path):
    url, follower, _ = service
    config, _ = trained
    log = SearchLog(tmp_path, max_bytes=1 << 20, max_seconds=3600).start()
    exploring = create_app(follower, config.serve.model_copy(update={"explore_share": 1.0}), log)
    with running(exploring) as explored_url:
        top = [
            hit["item_id"]
            for hit in httpx.post(f"{url}/search", json={"query": "blue lamp", "k": 20}).json()["results"]
        ]
        shown = [
            [
                hit["item_id"]
                for hit in httpx.post(f"{explored_url}/search", json={"query": "blue lamp", "k": 10}).json()["results"]
            ]
            for _ in range(6)
        ]
    log.close()
    assert all(len(set(ids)) == 10 and set(ids) <= set(top) for ids in shown)
    assert len({tuple(ids) for ids in shown}) > 1 and set().union(*shown) - set(top[:10])  # random, and deeper
    records = read_log(tmp_path, "searches").records
    assert len(records) == 6 and records["explored"].all()


def test_a_log_that_cannot_be_written_shows_on_readyz_while_searches_answer(service, trained, tmp_path):
    _, follower, _ = service
    config, _ = trained
    (blocked := tmp_path / "blocked").write_text("a file where the log directory should be")
    log = SearchLog(blocked / "log", max_bytes=1 << 20, max_seconds=3600).start()
    with running(create_app(follower, config.serve, log)) as url:
        assert httpx.post(f"{url}/search", json={"query": "mug"}).status_code == 200
        wait_for(lambda: "search_log" in httpx.get(f"{url}/readyz").json()["problems"], "/readyz to say why")
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert "cannot write the searches log" in ready.json()["problems"]["search_log"]
        assert httpx.post(f"{url}/search", json={"query": "mug"}).status_code == 200
    log.close()


def test_an_experiment_interleaves_champion_and_challenger_and_credits_each_side(service, trained, tmp_path):
    """experiment_share 1: every search team-drafts the champion's and the challenger's rankings
    (two versions of the same model here, so the page is the champion's own top k); the log
    says which side picked each result, and an event credits that side on /metrics. Then
    shadow_share 1: the champion answers alone and the challenger's rankings go to the log."""
    from mlflow import MlflowClient

    from smar.serving.follower import AliasFollower

    _, follower, versions = service
    config, _ = trained
    champion = follower.current.version
    rival = next(v for key, v in versions.items() if key != "broken" and v != champion)
    MlflowClient().set_registered_model_alias(MODEL_NAME, "challenger", rival)
    challenger = AliasFollower(MODEL_NAME, "challenger", poll_seconds=0.2)
    challenger.start()
    log = SearchLog(tmp_path / "log", max_bytes=1 << 20, max_seconds=3600).start()
    settings = config.serve.model_copy(update={"experiment_share": 1.0, "explore_share": 0.5})
    with running(create_app(follower, settings, log, challenger)) as url:
        wait_for(lambda: challenger.current is not None, "the challenger to load")
        searches = [httpx.post(f"{url}/search", json={"query": "red mug", "k": 10}).json() for _ in range(5)]
        before = scrape(url)
        clicked = {"search_id": searches[0]["search_id"], "item_id": searches[0]["results"][1]["item_id"]}
        assert httpx.post(f"{url}/events", json=clicked | {"event": "click", "position": 2}).status_code == 202
        after = scrape(url)
    shadowing = config.serve.model_copy(update={"shadow_share": 1.0, "explore_share": 0.0})
    shadow_log = SearchLog(tmp_path / "shadowed", max_bytes=1 << 20, max_seconds=3600).start()
    with running(create_app(follower, shadowing, shadow_log, challenger)) as url:
        answered = [httpx.post(f"{url}/search", json={"query": "wool", "k": 4}).json() for _ in range(3)]
        wait_for(lambda: scrape(url)[("smar_shadow_overlap_count",)] == 3, "three shadow rankings")
    challenger.stop()
    log.close()
    shadow_log.close()
    shadowed = read_log(tmp_path / "shadowed", "shadow").records
    assert sorted(shadowed["search_id"]) == sorted(search["search_id"] for search in answered)
    assert (shadowed["challenger_version"] == rival).all() and (shadowed["overlap"] == 1.0).all()  # one model twice
    assert read_log(tmp_path / "shadowed", "searches").records["sides"].isna().all()  # the champion answered alone

    records = read_log(tmp_path / "log", "searches").records.set_index("search_id")
    for search in searches:
        record = records.loc[search["search_id"]]
        assert record["challenger_version"] == rival and not record["explored"]  # interleaved, never explored
        assert sorted(record["sides"]) == ["challenger"] * 5 + ["champion"] * 5  # the picks stay balanced
        assert [r["item_id"] for r in search["results"]] == [r["item_id"] for r in searches[0]["results"]]
    credited = ("smar_experiment_credits_total", ("side", records.loc[clicked["search_id"], "sides"][1]))
    assert after[credited] - before.get(credited, 0.0) == 1
    assert after[("smar_experiment_searches_total",)] == 5
    assert after[("smar_experiment_impressions_total", ("side", "champion"))] == 25

    [(key, outcomes)] = logged_outcomes(tmp_path / "log").items()  # what `smar registry compare` reads
    side = records.loc[clicked["search_id"], "sides"][1]
    assert key == (MODEL_NAME, champion, rival) and sorted(outcomes, key=str) == [None] * 4 + [side]
    shown = CliRunner().invoke(cli.app, ["registry", "compare", "--log-dir", str(tmp_path / "log")])
    assert shown.exit_code == 0 and f"v{champion}  v{rival}  5  " in shown.output
    assert "not distinguishable" in shown.output  # one decided search says nothing yet


def test_shoppers_prefer_the_better_side_and_smar_promote_makes_it_champion(prefect_harness, trained, tmp_path):
    """The experiment end to end: the champion is a version made worse on purpose (its index's
    item ids shuffled); the register step, with register.await_interleaving, passes the trained
    version and leaves it `challenger`, awaiting interleaving; simulated shoppers search the
    service interleaving both; the smar-promote flow reads the log and promotes the challenger."""
    import numpy as np
    import yaml
    from mlflow import MlflowClient

    from smar.pipeline.flow import smar_promote
    from smar.registry.on_traffic import AWAITING
    from smar.registry.promotion import current_champion, history, move_champion
    from smar.serving.follower import AliasFollower

    config, paths = trained
    name, client = f"{MODEL_NAME}-experiment", MlflowClient()
    shuffled = tmp_path / "shuffled-index"
    shutil.copytree(paths.index.root, shuffled)
    id_map = pd.read_parquet(shuffled / "id_map.parquet")
    id_map["item_id"] = np.random.default_rng(0).permutation(id_map["item_id"].to_numpy())
    id_map.to_parquet(shuffled / "id_map.parquet", index=False)
    worse = register_version(paths, index_dir=shuffled, name=name)
    move_champion(client, name, worse, expected=None, reason="made worse on purpose", by="test")

    settings = {"model_name": name, "await_interleaving": True, "interleaving_searches": 400}
    waiting = config.model_copy(update={"register_": config.register_.model_copy(update=settings)})
    steps.run_step("evaluate", waiting, paths)
    registered = steps.run_step("register", waiting, paths)
    challenger = registered["version"]
    assert registered["verdict"] == AWAITING and not registered["promote"], registered["reason"]
    assert current_champion(client, name) == worse
    assert str(client.get_model_version_by_alias(name, "challenger").version) == challenger

    followers = [AliasFollower(name, alias, poll_seconds=60) for alias in ("champion", "challenger")]
    for follower in followers:
        follower.start()
    log = SearchLog(tmp_path / "log", max_bytes=1 << 20, max_seconds=3600).start()
    experiment = config.serve.model_copy(update={"experiment_share": 1.0, "explore_share": 0.0})
    with running(create_app(followers[0], experiment, log, followers[1])) as url:
        wait_for(lambda: all(f.current is not None for f in followers), "both versions to load")
        simulate(url, paths.data, 400, seed=0, concurrency=4)
        side_by_side_shows_what_differs(url, worse, challenger, tmp_path)
    for follower in followers:
        follower.stop()
    log.close()
    assert len(read_log(tmp_path / "log", "searches").records) == 400  # the shoppers' searches; comparing logs none

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"register": settings}))
    decided = smar_promote(params_file=str(params), log_dir=str(tmp_path / "log"))
    assert decided["decision"] == "promoted" and decided["searches"] == 400, decided
    assert current_champion(client, name) == challenger
    [*_, move] = history(client, name)
    assert move["by"] == "interleaving" and "shoppers prefer it" in move["reason"]
    assert client.get_model_version(name, challenger).tags["gate.decision"] == "promoted"


def side_by_side_shows_what_differs(url: str, champion: str, challenger: str, tmp_path: Path) -> None:
    """POST /compare, and the search page's side-by-side view in a real browser: each side's top k,
    where the other side ranks each item, and the items only one side shows outlined; nothing logged."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    body = httpx.post(f"{url}/compare", json={"query": "red striped mug", "k": 8}).json()
    assert (body["champion"]["model_version"], body["challenger"]["model_version"]) == (champion, challenger)
    for side, other in (("champion", "challenger"), ("challenger", "champion")):
        theirs = [result["item_id"] for result in body[other]["results"]]
        for result in body[side]["results"]:
            expected = theirs.index(result["item_id"]) + 1 if result["item_id"] in theirs else None
            assert result["rank_there"] == expected
    differs = sum(result["rank_there"] is None for result in body["champion"]["results"])
    assert differs > 0  # a shuffled index against the trained one

    with chromium(tmp_path / "profile") as browser:
        browser.get(f"{url}/")
        browser.find_element(By.ID, "query").send_keys("red striped mug")
        browser.find_element(By.ID, "compare").click()
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(browser, 60).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#sides figure")) == 24)
        headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#sides h2")]
        assert headings[0].startswith(f"champion: version {champion}") and f"version {challenger}" in headings[1]
        outlined = browser.find_elements(By.CSS_SELECTOR, "#sides .side[data-side=champion] figure.differs")
        assert len(outlined) > 0 and all(
            f.find_element(By.CLASS_NAME, "there").text == "only on this side" for f in outlined
        )


def test_compare_without_a_challenger_says_how_to_load_one(service):
    url, _, _ = service
    refused = httpx.post(f"{url}/compare", json={"query": "red mug"})
    assert refused.status_code == 409 and "serve.side_by_side" in refused.json()["error"]


def test_with_the_log_off_searches_answer_and_events_are_refused(service, trained):
    _, follower, _ = service
    config, _ = trained
    with running(create_app(follower, config.serve.model_copy(update={"log": False}))) as url:
        assert httpx.post(f"{url}/search", json={"query": "mug"}).json()["search_id"]
        refused = httpx.post(f"{url}/events", json=GOOD_EVENT)
        assert refused.status_code == 503 and "serve.log: false" in refused.json()["error"]


def test_simulated_shoppers_on_two_servers_sharing_one_log_become_a_valid_dataset(service, trained, tmp_path):
    """Searches to one server, their events to another, both logging into one directory:
    from-logs joins them all, drops the bots, and the dataset passes validation."""
    _, follower, _ = service
    config, paths = trained
    logs = [SearchLog(tmp_path / "log", max_bytes=1 << 20, max_seconds=3600).start() for _ in range(2)]
    exploring = config.serve.model_copy(update={"explore_share": 0.5})
    with (
        running(create_app(follower, exploring, logs[0])) as searched,
        running(create_app(follower, exploring, logs[1])) as told,
    ):
        sent = simulate(searched, paths.data, 600, seed=1, concurrency=4, events_url=told)
    for log in logs:
        log.close()
    assert sent["searches"] == 600 and sent["bot_searches"] == 30 and sent["click"] > 100
    [searched_segment] = os.listdir(tmp_path / "log" / "searches")  # one server's writer...
    [told_segment] = os.listdir(tmp_path / "log" / "events")  # ...and the other's, in one directory
    assert searched_segment.split("-")[-1] != told_segment.split("-")[-1]

    settings = config.from_logs.model_copy(update={"split_by": "query", "min_test_queries": 3})
    manifest = from_logs(tmp_path / "log", paths.data, tmp_path / "dataset", settings)
    source = manifest["source"]
    assert source["read"]["searches"]["records"] == 600 and source["dropped"]["searches"]["bot"] == 30
    assert source["dropped"]["events"]["unknown_search"] == 0  # every event found its search on the other server
    assert source["dropped"]["events"]["repeated"] == sent["repeated_events"] > 0  # retried posts, each once
    steps.validate(config, Paths(tmp_path / "dataset", tmp_path / "outputs"))
    truth = pd.read_parquet(paths.data / "qrels.parquet")
    texts = pd.read_parquet(paths.data / "queries.parquet").set_index("query_id")["text"]
    true_pairs = {(query_id(normalise(texts[q])), item) for q, item in zip(truth["query_id"], truth["item_id"])}
    built = pd.read_parquet(tmp_path / "dataset" / "qrels.parquet")
    assert len(set(zip(built["query_id"], built["item_id"])) & true_pairs) / len(built) > 0.8


def test_search_page_is_served(service):
    url, _, _ = service
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and '<form id="search"' in page.text and "/version" in page.text


def test_alias_moves_are_followed_without_a_failed_request(service):
    """Hammer /search while the alias moves; every answer is a 200 from one whole version, in order."""
    url, follower, versions = service
    seen, failures, stop = [], [], threading.Event()

    def client():
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                response = http.post("/search", json={"query": "blue lamp", "k": 5})
                if response.status_code != 200:
                    failures.append(response.text)
                else:
                    seen.append(response.json()["model_version"])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(seen) > 20, "requests against the first version")
        point_alias(versions["second"])
        wait_for(lambda: follower.current.version == versions["second"], "the swap")
        before = len(seen)
        wait_for(lambda: len(seen) > before + 20, "requests against the second version")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert set(seen) == {versions["first"], versions["second"]}
    swap = seen.index(versions["second"])
    assert all(
        v == versions["second"] for v in seen[swap + 20 :]
    )  # a few answers computed before the swap may land after it
    assert httpx.get(f"{url}/readyz").json()["model_version"] == versions["second"]


def test_results_link_to_the_catalogs_image_urls(service, trained, tmp_path, caplog):
    """A catalog with an image_url column: its items link there (and get no thumbnail); the rest keep theirs."""
    url, follower, versions = service
    config, paths = trained
    data, outputs = tmp_path / "data", tmp_path / "outputs"
    shutil.copytree(paths.data, data)
    items = pd.read_parquet(data / "items.parquet")
    items["image_url"] = [f"https://cdn.example.com/{i}.jpg" if n % 2 else None for n, i in enumerate(items["item_id"])]
    items.to_parquet(data / "items.parquet", index=False)
    shutil.copytree(paths.embeddings.root, outputs / "embeddings")
    steps.run_step("index", config, Paths(data, outputs))
    caplog.set_level(logging.INFO, logger="smar.serving.follower")
    with_urls = register_version(paths, index_dir=outputs / "index")
    try:
        swap_to(follower, with_urls, caplog)
        results = httpx.post(f"{url}/search", json={"query": "red striped mug", "k": 30}).json()["results"]
        links = {
            item: link if isinstance(link, str) else None for item, link in zip(items["item_id"], items["image_url"])
        }
        assert {r["image_url"] for r in results} - {None} and all(
            r["image_url"] == (links[r["item_id"]] or f"/images/{r['item_id']}") for r in results
        )
        for result in results[:6]:
            thumbnail = httpx.get(f"{url}/images/{result['item_id']}")
            assert thumbnail.status_code == (404 if links[result["item_id"]] else 200), result
    finally:
        swap_to(follower, versions["first"], caplog)


def test_smar_serve_needs_neither_a_params_file_nor_a_dataset(service, tmp_path):
    """`smar serve` from an empty directory: the defaults, the registry, and the version's thumbnails."""
    url, _, versions = service
    point_alias(versions["first"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = tmp_path / "host"  # where it runs: an empty directory
    host.mkdir()
    smar = [sys.executable, "-m", "smar", "serve"]
    environment = os.environ | {"PYTHONPATH": str(PROJECT)}
    missing = subprocess.run([*smar, "--params", "nowhere.yaml"], cwd=host, env=environment, capture_output=True)
    assert missing.returncode == 1 and b"nowhere.yaml: no such parameters file" in missing.stderr, missing.stderr
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [*smar, "--model-name", MODEL_NAME, "--port", str(port)],
            cwd=host,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    served = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is not None or httpx.get(f"{served}/readyz").status_code == 200, "smar serve")
        assert server.poll() is None, log.read_text()[-3000:]
        [hit] = httpx.post(f"{served}/search", json={"query": "blue lamp", "k": 1}).json()["results"]
        image = httpx.get(served + hit["image_url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert [path.name for path in host.iterdir()] == ["outputs"]  # it wrote nothing else where it ran
    found = read_log(host / "outputs" / "search-log", "searches")  # serve.log_dir's default
    assert found.open_segments == 0 and found.records["query"].tolist() == ["blue lamp"]  # closed on SIGTERM


def swap_to(follower, version: str, caplog) -> None:
    """Move the alias and wait until the follower has swapped and settled (its log line comes last)."""
    caplog.clear()
    point_alias(version)
    wait_for(
        lambda: any(f"= version {version} (was" in record.getMessage() for record in caplog.records),
        f"the swap to version {version}",
    )
    assert follower.current.version == version


def test_swaps_load_little_free_the_old_model_and_freeze_nothing_more(service, caplog):
    """A swap builds no PyTorch model (most of a load's CPU time, beside the requests being answered).
    gc.freeze() runs once, after the first load: a frozen object is never collected, so freezing on
    every swap kept each load's garbage (and any cycle of the swapped-out model) for good."""
    url, follower, versions = service
    caplog.set_level(logging.INFO, logger="smar.serving.follower")
    swap_to(follower, versions["second"], caplog)
    # a load reads what serving runs (tokenizer, ONNX query tower, indexes), not the PyTorch towers
    assert "model" not in vars(follower.current.retriever) and follower.current.retriever.onnx is not None
    frozen = gc.get_freeze_count()
    outgoing = weakref.ref(follower.current.retriever)
    swap_to(follower, versions["first"], caplog)
    assert httpx.post(f"{url}/search", json={"query": "mug"}).json()["model_version"] == versions["first"]
    assert outgoing() is None, "the swapped-out retriever is still alive"  # the search batcher let go of it too
    swap_to(follower, versions["second"], caplog)
    assert gc.get_freeze_count() <= frozen, f"{gc.get_freeze_count() - frozen} more objects frozen after two swaps"


def test_broken_version_keeps_the_last_good_model_serving(service, caplog):
    url, follower, versions = service
    point_alias(versions["second"])
    wait_for(lambda: follower.current.version == versions["second"], "the second version")
    point_alias(versions["broken"])
    wait_for(lambda: "load" in follower.problems, "the broken version to be tried")
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == versions["second"]
    assert f"version {versions['broken']} failed to load" in ready.json()["problems"]["load"]
    assert f"still serving version {versions['second']}" in ready.json()["problems"]["load"]
    assert httpx.post(f"{url}/search", json={"query": "mug"}).json()["model_version"] == versions["second"]
    point_alias(versions["second"])  # rolled back: the complaint goes away
    wait_for(lambda: "load" not in follower.problems, "the problem to clear")


def test_unreachable_registry_keeps_serving_and_says_so(service, monkeypatch):
    url, follower, versions = service
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast instead of MLflow's minutes of retries
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    serving = follower.current.version
    follower.tracking_uri = "http://127.0.0.1:9"  # nothing listens there
    try:
        wait_for(lambda: "registry" in follower.problems, "the registry check to fail", seconds=180)
        ready = httpx.get(f"{url}/readyz").json()
        assert ready["ready"] is True and ready["model_version"] == serving
        assert "cannot resolve serving-test@champion" in ready["problems"]["registry"]
        assert httpx.post(f"{url}/search", json={"query": "mug"}).status_code == 200
    finally:
        follower.tracking_uri = None
    wait_for(lambda: "registry" not in follower.problems, "the registry to be back")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
REQUESTS = st.one_of(
    st.binary(max_size=300),  # anything at all, valid UTF-8 or not
    JSON.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(  # the right shape, with hostile values: huge, empty, any unicode, surrogates
        {"query": st.one_of(st.text(max_size=400), st.text(min_size=5000, max_size=6000), st.just("\ud800"), JSON)},
        optional={"k": st.one_of(st.integers(min_value=-(2**70), max_value=2**70), JSON)},
    ).map(lambda body: json.dumps(body).encode()),
)


@pytest.mark.parametrize("route", ["/search", "/events"])
@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=REQUESTS)
def test_no_request_body_gets_a_5xx(service, route, body):
    url, _, _ = service
    response = httpx.post(f"{url}{route}", content=body, timeout=30)
    assert response.status_code < 500, (body, response.status_code, response.text)
    assert response.status_code in (200, 202, 422), response.text
    if response.status_code == 422:
        assert response.json()["error"]


def test_search_page_shows_result_images_in_a_real_browser(service, tmp_path):
    """Debian's Chromium, headless, driven by Selenium: type a query, see the result images load."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, versions = service
    with chromium(tmp_path / "profile") as browser:
        browser.get(f"{url}/")
        box = browser.find_element(By.ID, "query")
        box.send_keys("red striped mug")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results figure")) >= 10)
        wait.until(
            lambda b: b.execute_script(
                "const imgs = [...document.querySelectorAll('#results img')];"
                "return imgs.length >= 10 && imgs.every(i => i.complete && i.naturalWidth > 0);"
            )
        )
        titles = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#results .title")]
        assert all(titles), titles
        footer = browser.find_element(By.ID, "footer").text
        assert f"model {MODEL_NAME} version " in footer and "(champion)" in footer, footer
        shot = tmp_path / "search-page.png"
        browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
