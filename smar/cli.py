"""The `smar` command line: one verb per pipeline step, plus data, pipeline and serving.

Heavy libraries are imported inside the commands, so `smar --help` answers at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Annotated, Literal

import typer

app = typer.Typer(
    help="SMAR multimodal retrieval: data, training, indexing, evaluation, registry and serving.", no_args_is_help=True
)
data_app = typer.Typer(help="Build datasets in the data contract.", no_args_is_help=True)
app.add_typer(data_app, name="data")
registry_app = typer.Typer(
    help="The model registry's champion: promote, roll back, history, compare on live traffic.", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")

ParamsOption = Annotated[Path, typer.Option("--params", help="Parameters file (params.yaml layout).")]
DataOption = Annotated[Path, typer.Option("--data", help="Dataset directory.")]
OutOption = Annotated[Path, typer.Option("--out", help="Directory for the steps' outputs.")]
PROJECT_PARAMS = Path("params.yaml")

log = logging.getLogger("smar")


@app.callback()
def _setup() -> None:
    """Before every command: the process's environment, warnings and logging (smar.core.process)."""
    from smar.core.process import setup

    setup()


@contextlib.contextmanager
def _user_errors():
    """Errors the user can fix (or wait out: the tracking server away) exit 1 with their message, no traceback."""
    from smar.core.errors import SmarError, TrackingUnavailable

    try:
        yield
    except (SmarError, TrackingUnavailable) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


def _step_command(name: str, help_text: str) -> None:
    """`smar <name>`: load the config, run the step (smar.pipeline.steps), print its result as JSON."""

    def command(
        params: ParamsOption = Path("params.yaml"), data: DataOption = Path("data"), out: OutOption = Path("outputs")
    ):
        from smar.core.config import load_config
        from smar.core.paths import Paths
        from smar.pipeline.steps import run_step

        with _user_errors():
            result = run_step(name, load_config(params), Paths(data, out))
        if result is not None:  # None: a training rank other than 0
            typer.echo(json.dumps(result, indent=2, default=str))

    command.__doc__ = help_text
    app.command(name)(command)


_step_command("validate", "Check the dataset (Great Expectations suites + image checks).")
_step_command(
    "featurize", "Run the frozen encoders over the catalog and training queries, in shards (reused when unchanged)."
)
_step_command("train", "Train the two-tower model; one MLflow run.")
_step_command("export", "Encode every catalog item (one embeddings file per served view).")
_step_command("index", "Build the FAISS index over the item embeddings.")
_step_command("evaluate", "Recall/Precision/F1/MRR/NDCG on held-out queries, beside a random baseline.")
_step_command("register", "Log the retriever to the MLflow registry and run the promotion gate.")


@data_app.command("synth")
def data_synth(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data"),
    preset: Annotated[
        str | None,
        typer.Option(help="Named size (tiny, small, medium, large) instead of params.yaml's `data` section."),
    ] = None,
    split_by: Annotated[
        str | None,
        typer.Option(
            "--split-by", help="query, category, family, brand or material (default: params.yaml's data.split_by)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Processes drawing the images (default: every core). Any number writes the same bytes.",
        ),
    ] = None,
) -> None:
    """Write the deterministic synthetic default dataset (the same bytes for the same parameters)."""
    from smar.core.config import load_config
    from smar.core.errors import SmarError
    from smar.data.synth import PRESETS, synthesize

    with _user_errors():
        if preset is not None and preset not in PRESETS:
            raise SmarError(f"--preset {preset!r} is unknown; choose one of {', '.join(PRESETS)}.")
        config = PRESETS[preset] if preset else load_config(params).data
        if split_by is not None:
            config = _with_split_by(config, split_by)
        manifest = synthesize(config, data, workers=workers)
    typer.echo(f"wrote {data}: {json.dumps(manifest['counts'])}")


def _with_split_by(config, split_by: str):
    from pydantic import ValidationError

    from smar.core.config import DataConfig
    from smar.core.errors import ConfigError, describe_invalid

    try:
        return DataConfig.model_validate(config.model_dump() | {"split_by": split_by})
    except ValidationError as error:
        raise ConfigError(f"--split-by {split_by!r}:\n{describe_invalid(error)}") from None


@data_app.command("import")
def data_import(
    format: Annotated[
        Literal["table", "jd-tsv"],
        typer.Option(
            "--format",
            help="table: items/queries/interactions files; jd-tsv: an id-encoded release directory (--source).",
        ),
    ] = "table",
    items: Annotated[Path | None, typer.Option(help="table: items file (.csv, .tsv, .jsonl, .parquet).")] = None,
    queries: Annotated[Path | None, typer.Option(help="table: queries file.")] = None,
    interactions: Annotated[
        Path | None, typer.Option(help="table: interactions file (clicks or graded labels, optional split).")
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(help="table: folder the items' image column is relative to (default: the items file's folder)."),
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            help="jd-tsv: release directory (items.tsv, queries.tsv, interactions.tsv, image_features.npy, "
            "image_feature_ids.txt)."
        ),
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="TABLE.COLUMN=SOURCE_COLUMN, repeatable, e.g. items.item_id=sku; empty SOURCE_COLUMN: the source "
            "has none (brand, label, split).",
        ),
    ] = None,
    label: Annotated[
        Literal["clicks", "graded"],
        typer.Option(
            help="clicks: label = clicks summed per (query, item), 0 dropped; graded: the label column as is."
        ),
    ] = "clicks",
    drop_items_without_features: Annotated[
        bool,
        typer.Option(
            "--drop-items-without-features",
            help="jd-tsv: drop items with no feature row (with a warning) instead of failing.",
        ),
    ] = False,
    data: Annotated[
        Path, typer.Option("--data", help="Output dataset directory (replaced only if the import succeeds).")
    ] = Path("data"),
    name: Annotated[str, typer.Option(help="Dataset name in dataset.json.")] = "imported",
    seed: Annotated[int, typer.Option(help="Seed of the split (when the source has no split).")] = 0,
    valid_fraction: Annotated[
        float, typer.Option(help="Fraction of queries (or, with --split-by, of items) in the valid split.")
    ] = 0.1,
    test_fraction: Annotated[
        float, typer.Option(help="Fraction of queries (or, with --split-by, of items) in the test split.")
    ] = 0.15,
    split_by: Annotated[
        str,
        typer.Option(
            "--split-by",
            help="query: a hash of the query id; or an item column (category, product, ...): whole groups of items "
            "per split, so test queries ask for unseen items.",
        ),
    ] = "query",
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Build a dataset in the data contract from your catalog (see smar/data/importers.py for both formats).

    With no --items/--queries/--interactions/--source, the `import` section of params.yaml says what to import.
    """
    from smar.core.config import load_config
    from smar.core.errors import ConfigError
    from smar.data.importers import config_from_options, import_catalog

    with _user_errors():
        if not any((items, queries, interactions, source)):
            config = load_config(params).import_
            if config is None:
                raise ConfigError(
                    f"{params}: no `import` section; pass --items/--queries/--interactions (or --format jd-tsv "
                    f"--source DIR), or add one."
                )
            manifest = import_catalog(config, data)
            typer.echo(f"wrote {data}: {json.dumps(manifest['counts'])}")
            return
        config = config_from_options(
            format=format,
            items=items,
            queries=queries,
            interactions=interactions,
            images=images,
            source=source,
            maps=maps or (),
            label=label,
            drop_items_without_features=drop_items_without_features,
            name=name,
            seed=seed,
            valid_fraction=valid_fraction,
            test_fraction=test_fraction,
            split_by=split_by,
        )
        manifest = import_catalog(config, data)
    typer.echo(f"wrote {data}: {json.dumps(manifest['counts'])}")


DataRevOption = Annotated[
    str | None,
    typer.Option("--data-rev", help="Git revision whose data.dvc picks the dataset version (materialised with DVC)."),
]


@app.command()
def pipeline(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data"),
    out: OutOption = Path("outputs"),
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve the flow as a deployment for runs triggered from the Prefect UI.")
    ] = False,
    data_rev: DataRevOption = None,
) -> None:
    """Run the whole chain (validate -> featurize -> train -> export -> index -> evaluate -> register) as one Prefect
    flow run."""
    _run_flow("smar_pipeline", params, data, out, data_rev, serve)


@app.command()
def reindex(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data"),
    out: OutOption = Path("outputs"),
    data_rev: DataRevOption = None,
) -> None:
    """A changed catalog without training: the champion's towers export, index and register it through the gate."""
    _run_flow("smar_reindex", params, data, out, data_rev)


def _run_flow(name: str, params: Path, data: Path, out: Path, data_rev: str | None, serve: bool = False) -> None:
    from smar.core.config import load_config

    with _user_errors():
        load_config(params)  # a bad params file fails here, before Prefect starts
    from smar.pipeline import flow
    from smar.pipeline.summary import format_summary

    if serve:
        flow.serve_deployment(params_file=str(params), data_dir=str(data), outputs_dir=str(out))
        return
    with _user_errors():
        summary = getattr(flow, name)(
            params_file=str(params), data_dir=str(data), outputs_dir=str(out), data_rev=data_rev
        )
    typer.echo(format_summary(summary))


@data_app.command("from-logs")
def data_from_logs(
    log_dir: Annotated[Path, typer.Argument(help="The search log (serve.log_dir of the servers).")],
    out: Annotated[Path, typer.Option("--out", help="The new dataset directory (replaced only on success).")],
    catalog: Annotated[Path, typer.Option("--catalog", help="Dataset whose items the searches ranked.")] = Path("data"),
    params: ParamsOption = Path("params.yaml"),
    split_by: Annotated[
        str | None, typer.Option("--split-by", help="time, query or an item column (default: from_logs.split_by).")
    ] = None,
    test_days: Annotated[
        float | None, typer.Option(help="split_by time: the last days' new queries are the test split.")
    ] = None,
    position_bias: Annotated[
        Literal["explored", "none"] | None,
        typer.Option(help="explored: corrected by the explored searches; none: not corrected."),
    ] = None,
    dvc: Annotated[bool, typer.Option(help="`dvc add` the new dataset when it lies in a DVC project.")] = True,
) -> None:
    """Build a dataset version from logged searches and shopper events (docs/traffic.md)."""
    from smar.core.config import SmarConfig, load_config
    from smar.data.revision import track
    from smar.traffic.dataset import from_logs

    with _user_errors():
        config = load_config(params) if params.is_file() or params != PROJECT_PARAMS else SmarConfig()
        given = {"split_by": split_by, "test_days": test_days, "position_bias": position_bias}
        settings = config.from_logs.model_copy(update={k: v for k, v in given.items() if v is not None})
        manifest = from_logs(log_dir, catalog, out, settings)
        pointer = track(out) if dvc else None
    source = manifest["source"]
    typer.echo(
        f"wrote {out}: {json.dumps(manifest['counts'])}\n"
        f"kept {json.dumps(source['kept'])}, dropped {json.dumps(source['dropped'])}\n"
        f"examination by position: {json.dumps(source['examination'])}"
    )
    if pointer:
        typer.echo(f"added to DVC: git add {pointer} && git commit, and a run picks it with --data-rev")


@app.command()
def learn(
    log_dir: Annotated[Path, typer.Option(help="The search log (serve.log_dir).")] = Path("outputs/search-log"),
    catalog: Annotated[Path, typer.Option(help="The catalog the searches ranked.")] = Path("data"),
    dataset: Annotated[Path, typer.Option(help="Where the new dataset version goes.")] = Path("data-from-logs"),
    params: ParamsOption = Path("params.yaml"),
    out: OutOption = Path("outputs/learn"),
) -> None:
    """The loop in one flow run (smar-learn): the search log -> a dataset version -> the pipeline on
    it -> a registered challenger, promoted only through the gate."""
    from smar.core.config import load_config

    with _user_errors():
        load_config(params)  # a bad params file fails here, before Prefect starts
    from smar.pipeline import flow
    from smar.pipeline.summary import format_summary

    with _user_errors():
        summary = flow.smar_learn(
            log_dir=str(log_dir),
            catalog_dir=str(catalog),
            dataset_dir=str(dataset),
            params_file=str(params),
            outputs_dir=str(out),
        )
    typer.echo(f"from-logs: {json.dumps(summary['from_logs'])}")
    typer.echo(format_summary({k: v for k, v in summary.items() if k != "from_logs"}))


@app.command()
def simulate(
    url: Annotated[str, typer.Option(help="The running `smar serve`.")] = "http://127.0.0.1:8000",
    data: Annotated[Path, typer.Option("--data", help="Dataset whose qrels are the shoppers' truth.")] = Path("data"),
    searches: Annotated[int, typer.Option(min=1, help="Searches to send.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of every draw.")] = 0,
    concurrency: Annotated[int, typer.Option(min=1, help="Shoppers searching at once.")] = 8,
    bot_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of searches from bots.")] = 0.05,
    events_url: Annotated[
        str | None, typer.Option(help="Send the events to this server instead (default: --url).")
    ] = None,
) -> None:
    """Simulated shoppers: searches and clicks, carts and purchases (by a position-based click model
    over the dataset's true relevance) sent to a running `smar serve` over HTTP."""
    import httpx

    from smar.core.errors import SmarError
    from smar.traffic.shoppers import Shoppers
    from smar.traffic.shoppers import simulate as run_shoppers

    with _user_errors():
        try:
            sent = run_shoppers(
                url,
                data,
                searches,
                seed=seed,
                concurrency=concurrency,
                shoppers=Shoppers(bot_share=bot_share),
                events_url=events_url,
            )
        except httpx.TransportError as error:
            raise SmarError(
                f"no smar serve answering at {events_url or url} ({error}). Fix: start `smar serve`."
            ) from None
    typer.echo(json.dumps(sent))


@app.command()
def serve(
    params: Annotated[
        Path | None,
        typer.Option(
            "--params",
            help="Parameters file: its `serve` section and register.model_name (default: ./params.yaml when there "
            "is one, else the defaults).",
        ),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option("--model-name", help="Registered model to follow (default: register.model_name, smar-retriever)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: serve.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: serve.port).")] = None,
) -> None:
    """Serve the registry's champion: POST /search, /healthz, /readyz, /version and a search page at /.

    Needs only the tracking server ($MLFLOW_TRACKING_URI): the registered version carries the
    model, the indexes, the titles and the thumbnails."""
    import os

    # Idle OpenMP threads (FAISS's, PyTorch's) sleep rather than spin: the server's event loop, its
    # batchers and an experiment's second model share the cores (benchmarks/results/serving-experiment-10.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when the OpenMP runtime loads
    from smar.core import tracking
    from smar.core.config import SmarConfig, load_config

    with _user_errors():
        if params is None:  # a serving host has no project checkout: the defaults then
            config = load_config(PROJECT_PARAMS) if PROJECT_PARAMS.is_file() else SmarConfig()
        else:
            config = load_config(params)  # named, so it must exist
    settings = config.serve.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    tracking.configure()
    from smar.serving.app import serve as run_service

    run_service(settings, model_name or config.register_.model_name)


def _registry(params: Path):
    """(MLflow client, registered model name) for the registry commands."""
    from mlflow import MlflowClient

    from smar.core import tracking
    from smar.core.config import load_config

    with _user_errors():
        config = load_config(params)
    tracking.configure()
    return MlflowClient(), config.register_.model_name


@registry_app.command("promote")
def registry_promote(
    version: Annotated[str, typer.Argument(help="Model version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why; recorded on the version and in the history.")],
    force: Annotated[bool, typer.Option("--force", help="Required: a manual promotion skips the gate.")] = False,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Make VERSION champion by hand, skipping the gate (recorded with --reason)."""
    from smar.core.errors import SmarError
    from smar.registry.promotion import current_champion, move_champion

    client, name = _registry(params)
    with _user_errors():
        if not force:
            raise SmarError("a manual promotion skips the promotion gate: pass --force (and --reason) to do it anyway.")
        if not reason.strip():
            raise SmarError("--reason is empty: say why this version should serve.")
        try:
            client.get_model_version(name, version)
        except Exception:
            raise SmarError(
                f"{name} has no version {version!r}; see `smar registry history` or the MLflow UI."
            ) from None
        event = move_champion(client, name, version, expected=current_champion(client, name), reason=reason, by="force")
    typer.echo(
        f"{name}: champion is now version {version} (was {event['previous_champion'] or 'none'}); reason: {reason}"
    )


@registry_app.command("rollback")
def registry_rollback(
    reason: Annotated[str, typer.Option(help="Why; recorded on the version and in the history.")] = "rollback",
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Move the champion back to the version that held it before the current one."""
    from smar.registry.promotion import rollback

    client, name = _registry(params)
    with _user_errors():
        event = rollback(client, name, reason)
    typer.echo(
        f"{name}: rolled back to version {event['version']} (from {event['previous_champion']}); reason: {reason}"
    )


@registry_app.command("history")
def registry_history(params: ParamsOption = Path("params.yaml")) -> None:
    """Every move of the champion, oldest first."""
    from smar.registry.promotion import OUTSIDE, current_champion, history, record_outside_move, when

    client, name = _registry(params)
    record_outside_move(client, name)  # a move made in the MLflow UI shows up, and is recorded, here
    for event in history(client, name):
        metrics = " ".join(f"{key}={value}" for key, value in event["metrics"].items())
        moved = f"{event['version'] or '-':<4} <- v{event['previous_champion'] or '-':<4} {event['by']:<8}"
        if event["by"] == OUTSIDE:  # no time of its own: the bounds, then the move
            typer.echo(f"{event.get('detected_at', event['promoted_at'])}  v{moved} {when(event)}; {event['reason']}")
            continue
        typer.echo(f"{event['promoted_at']}  v{moved} {event['reason']} {metrics}".rstrip())
    typer.echo(f"champion: version {current_champion(client, name) or 'none'}")


@registry_app.command("compare")
def registry_compare(
    log_dir: Annotated[Path, typer.Option(help="The search log (serve.log_dir).")] = Path("outputs/search-log"),
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Of the preference's interval.")] = 0.95,
) -> None:
    """Champion against challenger on live traffic: the interleaved searches in the log, won,
    lost and tied by the challenger, and how sure the preference is (serve.experiment_share)."""
    from smar.traffic.interleaving import logged_outcomes, preference

    compared = logged_outcomes(log_dir)
    if not compared:
        typer.echo(f"no interleaved searches in {log_dir}: set serve.experiment_share above 0 (docs/serving.md)")
        return
    typer.echo("model  champion  challenger  searches  wins  losses  ties  challenger preferred  interval  verdict")
    for (name, champion, challenger), outcomes in sorted(compared.items()):
        found = preference(outcomes, confidence)
        share = f"{found.share:.3f}" if found.share is not None else "-"
        interval = f"[{found.low:.3f}, {found.high:.3f}]" if found.low is not None else "-"
        typer.echo(
            f"{name}  v{champion}  v{challenger}  {found.searches:,}  {found.wins:,}  {found.losses:,}  "
            f"{found.ties:,}  {share}  {interval} ({confidence:.0%})  {found.verdict}"
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
