"""The one configuration schema: `params.yaml`, grouped by pipeline step.

The CLI, the DVC stages and the Prefect flow all load it through `load_config`; an invalid
value fails here, before any work, with the field named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from smar.core.contract import BY_QUERY, EVENTS, OPTIONAL_SOURCE_COLUMNS, SOURCE_TABLES
from smar.core.errors import ConfigError, describe_invalid
from smar.core.metrics import Metric


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """The synthetic default dataset (`smar data synth`)."""

    seed: int = 0
    num_items: int = Field(3000, ge=10)
    num_queries: int = Field(3000, ge=10)
    image_size: int = Field(64, ge=16, le=512)
    title_attribute_rate: float = Field(
        0.5, ge=0.0, le=1.0, description="Fraction of titles that state the item's colour and pattern."
    )
    typo_rate: float = Field(0.05, ge=0.0, le=1.0, description="Fraction of titles with one typo.")
    max_relevant_per_query: int = Field(30, ge=1, description="The most-clicked matching items kept per query.")
    valid_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    split_by: Literal["query", "category", "family", "brand", "material"] = Field(
        "category",
        description="An item column (category, family, ...): whole groups of items go to train, valid or test, and "
        "each query "
        "follows the group of its relevant items, so test queries ask for items training never saw; or query: each "
        "query draws its split.",
    )


class ValidateConfig(_Section):
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="Larger images are rejected.")
    example_rows: int = Field(5, ge=1, le=50, description="Failing rows quoted per failed check.")


ModelKind = Literal["smar_fused_only", "smar", "text_only", "image_only", "late_fusion", "smar_no_xattn"]


class ModelConfig(_Section):
    kind: ModelKind = Field(
        "smar_fused_only",
        description="smar_fused_only (SMAR's towers and cross-attention, trained on the fused view's loss alone: best "
        "on unseen products), smar (the paper: L_t, L_i and L_m), text_only (DPSR-like), image_only, late_fusion (sum "
        "of text and image vectors), smar_no_xattn (SMAR losses, MLP fusion without cross-attention).",
    )
    text_encoder: Literal["scratch", "minilm"] = Field(
        "minilm",
        description="minilm: all-MiniLM-L6-v2 weights (hidden size 384); scratch: a small BERT trained from scratch.",
    )
    image_backbone: str = Field("tf_efficientnet_lite0", description="Any timm model name.")
    image_weights: Literal["none", "imagenet"] = Field(
        "imagenet",
        description="imagenet: EfficientNet-Lite0 ImageNet weights (needs image_backbone tf_efficientnet_lite0); "
        "none: from scratch.",
    )
    pretrained: Literal["frozen", "finetune"] = Field(
        "frozen",
        description="frozen: the pretrained encoders keep their weights and their outputs are cached once per catalog; "
        "the towers learn on top of them. finetune: they train too, at learning_rate x pretrained_lr_scale (for a "
        "GPU).",
    )
    embedding_dim: int = Field(
        384, ge=8, description="Item and query vector size (MiniLM's 384 with text_encoder minilm)."
    )
    text_hidden_size: int = Field(384, ge=8)
    text_layers: int = Field(2, ge=1, description="Scratch text encoder only.")
    text_heads: int = Field(12, ge=1)
    max_text_length: int = Field(32, ge=4)
    vocab_size: int = Field(2000, ge=100, description="Scratch text encoder only.")
    share_text_encoder: bool = Field(True, description="Query and title towers share one text encoder.")
    text_pooling: Literal["cls", "mean"] = "mean"
    text_dropout: float = Field(
        0.1, ge=0, lt=1, description="Dropout in the scratch text encoder (attention and hidden)."
    )
    image_size: int = Field(64, ge=16, le=512)
    image_stage: int = Field(
        3,
        ge=1,
        le=5,
        description="ImageNet backbone only: the stage whose feature map becomes the image tokens (EfficientNet-Lite0: "
        "1 to 5, strides 2 to 32; earlier stages keep more of the colour that ImageNet training discards).",
    )
    fusion_width: int = Field(
        128, ge=8, description="Width of the image tower's Transformer and of the cross-attention fusion."
    )
    image_layers: int = Field(1, ge=1, description="Transformer layers over the backbone's patch tokens.")
    fusion_layers: int = Field(1, ge=1, description="Cross-attention layers from title tokens to image tokens.")
    adaptive_routing: bool = Field(
        False, description="kind smar only: a query head picks the multimodal or the text index (stage 2)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.text_hidden_size % self.text_heads:
            raise ValueError(
                f"text_hidden_size ({self.text_hidden_size}) must be a multiple of text_heads ({self.text_heads})"
            )
        if self.text_encoder == "minilm" and self.text_hidden_size != 384:
            raise ValueError(
                "text_encoder 'minilm' has hidden size 384: set text_hidden_size: 384 (and text_heads: 12)"
            )
        if self.text_encoder == "minilm" and self.embedding_dim != self.text_hidden_size:
            raise ValueError("text_encoder 'minilm' keeps MiniLM's vector space: set embedding_dim: 384")
        if self.image_weights == "imagenet" and self.image_backbone != "tf_efficientnet_lite0":
            raise ValueError(
                "image_weights 'imagenet' ships for EfficientNet-Lite0 only: set image_backbone: tf_efficientnet_lite0"
            )
        if self.adaptive_routing and self.kind != "smar":
            raise ValueError(
                f"adaptive_routing routes between the text and multimodal views that kind smar trains, not kind "
                f"{self.kind}: set kind: smar, or adaptive_routing: false"
            )
        return self

    @property
    def frozen_text(self) -> bool:
        """MiniLM stays as shipped: its token states are computed once per text and cached."""
        return self.text_encoder == "minilm" and self.pretrained == "frozen"

    @property
    def frozen_image(self) -> bool:
        """The ImageNet backbone stays as shipped: its feature maps are computed once per image and cached."""
        return self.image_weights == "imagenet" and self.pretrained == "frozen"


class TrainConfig(_Section):
    seed: int = 0
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=2)
    learning_rate: float = Field(1e-3, gt=0)
    pretrained_lr_scale: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Pretrained weights (MiniLM, ImageNet backbone) learn at learning_rate times this.",
    )
    weight_decay: float = Field(0.01, ge=0)
    initial_temperature: float = Field(0.05, gt=0, lt=1)
    alpha: float = Field(1.0, ge=0, description="Weight of L_t(query, item text).")
    beta: float = Field(0.5, ge=0, description="Weight of L_i(query, item image).")
    gamma: float = Field(2.0, ge=0, description="Weight of L_m(query, fused item).")
    router_epochs: int = Field(30, ge=1, description="Epochs of the adaptive-routing head (stage 2).")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_steps: int | None = Field(None, ge=1, description="Stop early after this many steps (smoke runs).")
    checkpoint_every_steps: int = Field(
        50,
        ge=0,
        description="Save the training state this often (0: never); a killed or failed training resumes from it.",
    )
    retries: int = Field(
        1, ge=0, description="Prefect retries of a failed train task (it resumes from the checkpoint)."
    )
    loader_workers: int = Field(
        0,
        ge=0,
        description="DataLoader worker processes assembling batches (0: in the training process, best on a few CPU "
        "cores).",
    )
    accumulation_steps: int = Field(
        1, ge=1, description="Split each batch into this many micro-batches (less memory, same negatives and gradient)."
    )
    compile: bool = Field(False, description="torch.compile the model (slow first steps; pays off on long GPU runs).")
    hard_negatives: str | None = Field(
        None,
        description="Each pair also gets a hard negative: mined (one of its query's top results under the model "
        "being trained that is not a known positive, mined every epoch), or an item column (family: another item "
        "with the positive's value of it). null: in-batch negatives only.",
    )
    graded_positives: bool = Field(
        False, description="Weigh each pair's loss by 1 + log(label) (labels are grades or click counts)."
    )
    auxiliary_anneal: bool = Field(
        False, description="alpha and beta (L_t, L_i) fall linearly to 0 over training; gamma stays."
    )
    zero_shot_blend: tuple[float, ...] = Field(
        (0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        min_length=1,
        description="After training, the branches added on top of the pretrained encoders are scaled by each "
        "factor (0: zero-shot MiniLM, 1: the model as trained) and the factor with the best validation score is "
        "kept in the saved weights. [1.0]: the model as trained.",
    )

    @field_validator("zero_shot_blend")
    @classmethod
    def _between_zero_and_one(cls, factors: tuple[float, ...]) -> tuple[float, ...]:
        outside = [factor for factor in factors if not 0.0 <= factor <= 1.0]
        if outside:
            raise ValueError(f"factors {outside} are outside [0, 1] (0: zero-shot MiniLM, 1: the model as trained)")
        return factors

    @model_validator(mode="after")
    def _divisible(self) -> TrainConfig:
        if self.batch_size % self.accumulation_steps:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of accumulation_steps ({self.accumulation_steps})"
            )
        return self


class FeaturizeConfig(_Section):
    shard_items: int = Field(
        20_000, ge=1, description="Rows per shard: the unit of work of a worker, and of a resumed run."
    )
    batch_size: int = Field(128, ge=1, description="Texts or images encoded at once.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="cuda (PyTorch, fp16) when present, else cpu (ONNX Runtime)."
    )


class ExportConfig(_Section):
    batch_size: int = Field(256, ge=1)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="cuda (fp16) when present, else cpu.")
    shard_items: int = Field(50_000, ge=1, description="Items per shard; the Prefect flow exports shards in parallel.")

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, values):
        moved = [name for name in ("task_runner", "workers", "cluster_address") if name in (values or {})]
        if moved:
            raise ValueError(
                f"{', '.join(moved)} moved to the cluster section (featurize's shards run there too): "
                f"cluster.task_runner, cluster.workers, cluster.address"
            )
        return values


class ClusterConfig(_Section):
    """Where the sharded steps (featurize, export) run their shards."""

    task_runner: Literal["threads", "dask", "ray"] = Field(
        "threads",
        description="Prefect task runner for the shards: threads, or dask / ray (pip install 'smar[dask]' / "
        "'smar[ray]').",
    )
    workers: int = Field(
        1, ge=1, description="Shards at once (threads, or the workers of a local Dask or Ray cluster)."
    )
    address: str | None = Field(
        None, description="A running Dask scheduler or Ray cluster to use; none: start a local one."
    )


class IndexConfig(_Section):
    factory: str = Field(
        "auto",
        description="faiss.index_factory string (Flat, HNSW32,Flat, IVF1024,PQ32x8, ...), or auto: chosen by catalog "
        "size.",
    )
    target_recall: float = Field(
        0.95,
        gt=0,
        le=1,
        description="Approximate indexes: smallest efSearch / nprobe whose Recall@10 against exact search reaches "
        "this.",
    )
    thumbnail_size: int = Field(
        96,
        ge=0,
        le=1024,
        description="Items with an image file and no image_url get a JPEG thumbnail of at most this many pixels a "
        "side inside the index, served by `smar serve` at /images/{item_id}; 0: none.",
    )


class EvaluateConfig(_Section):
    split: Literal["valid", "test"] = "test"
    ks: tuple[int, ...] = Field(
        (10, 50), min_length=1, description="Cutoffs: Recall, Precision, F1, MRR, NDCG and binary NDCG at each."
    )
    primary_metric: str = Field(
        "recall_at_10",
        description="The metric the gate decides on, training validates with and the summary leads with (NAME_at_K, "
        "NAME one of recall, precision, f1, mrr, ndcg, bndcg: NDCG with binary gains); its K must be one of ks.",
    )
    plot_max_k: int = Field(100, ge=1)
    random_baseline_draws: int = Field(5, ge=1)
    zero_shot_baseline: bool = Field(
        True, description="Score off-the-shelf MiniLM title search (no training) on the same queries, beside the model."
    )

    @model_validator(mode="after")
    def _primary_is_reported(self) -> EvaluateConfig:
        if any(k < 1 for k in self.ks) or len(set(self.ks)) != len(self.ks):
            raise ValueError(f"ks {list(self.ks)}: give distinct cutoffs of at least 1")
        metric = self.primary  # raises on a malformed name
        if metric.k not in self.ks:
            raise ValueError(
                f"primary_metric {metric.key} needs k {metric.k} in ks {list(self.ks)}: add {metric.k} to ks, "
                f"or choose a primary metric at one of them (e.g. {metric.name}_at_{self.ks[0]})"
            )
        return self

    @property
    def primary(self) -> Metric:
        return Metric.parse(self.primary_metric)


class RegisterConfig(_Section):
    model_name: str = "smar-retriever"
    threshold: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="The gate's floor: a version scoring below it on evaluate.primary_metric is never champion.",
    )
    tolerance: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="How far below the champion's score a candidate's may be, sure of it with `confidence`: a "
        "candidate is promoted when the interval of (candidate - champion) lies above -tolerance "
        "(docs/registry.md#the-gate).",
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Confidence of the gate's intervals (a paired bootstrap over the queries)."
    )
    await_interleaving: bool = Field(
        False,
        description="A version the offline gate passes waits as challenger until shoppers prefer it in the "
        "interleaving experiment (serve.experiment_share); the smar-promote flow decides (docs/registry.md).",
    )
    interleaving_searches: int = Field(
        4000,
        ge=4,
        description="Interleaved searches an experiment may take: looked at after each quarter; not distinguishable "
        "after all of them.",
    )
    interleaving_confidence: float = Field(
        0.99,
        gt=0.5,
        lt=1.0,
        description="Confidence of the shoppers' preference over the experiment's four looks together: a "
        "promotion on live traffic acts at once, so it asks for more than the offline gate "
        "(benchmarks/results/interleaving.md).",
    )
    min_gate_queries: int = Field(
        30,
        ge=1,
        description="The gate compares candidate and champion only on evaluation queries neither trained on; with "
        "fewer, it refuses to decide.",
    )
    retries: int = Field(
        2,
        ge=0,
        description="Prefect retries of the steps after training that need the tracking server (evaluate, register, "
        "fetch_champion).",
    )
    retry_delay_seconds: float = Field(
        30.0, ge=0, description="Wait between those retries (a tracking server restarting)."
    )


class ServeConfig(_Section):
    host: str = Field("127.0.0.1", description="Interface `smar serve` binds.")
    port: int = Field(8000, ge=1, le=65535)
    alias: str = Field("champion", description="Registry alias the service follows.")
    poll_seconds: float = Field(
        5.0, gt=0, description="How often the service asks the registry where the alias points."
    )
    max_query_chars: int = Field(256, ge=1, description="Longer queries are refused with 422.")
    max_k: int = Field(100, ge=1, description="Largest k a request may ask for.")
    max_batch: int = Field(64, ge=1, description="Concurrent queries encoded together in one batch.")
    log: bool = Field(True, description="Log every search and accept shopper events at POST /events.")
    log_dir: Path = Field(
        Path("outputs/search-log"), description="Where the search log goes; any number of servers may share it."
    )
    log_rotate_mb: float = Field(64.0, gt=0, description="A log segment is closed into Parquet at this size...")
    log_rotate_minutes: float = Field(60.0, gt=0, description="...or at this age.")
    user_salt: str = Field("", description="Key of the hash user ids are logged under (never the id itself).")
    explore_share: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Share of searches shown k of the top 2k in random order: the log's evidence of position bias.",
    )
    experiment_share: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of searches answered by interleaving the champion's and the challenger's rankings "
        "(docs/serving.md#champion-and-challenger-on-live-traffic); 0: off, no challenger loaded.",
    )
    shadow_share: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of searches the challenger also ranks, unseen: its ranking and its overlap with the "
        "champion's go to the search log (shadow) and /metrics; 0: off.",
    )
    challenger_alias: str = Field("challenger", description="The alias an experiment's challenger is followed on.")
    side_by_side: bool = Field(
        False,
        description="Load the challenger too (as an experiment does), so that POST /compare and the search page "
        "show its results beside the champion's for one query, what differs marked.",
    )


class FromLogsConfig(_Section):
    """`smar data from-logs`: a dataset version from the search log (docs/traffic.md)."""

    grades: dict[str, int] = Field(
        {"click": 1, "add_to_cart": 2, "purchase": 3}, description="Label of a pair by its strongest event."
    )
    position_bias: Literal["explored", "none"] = Field(
        "explored",
        description="explored: examination by position estimated from the explored searches; none: not corrected.",
    )
    max_weight: float = Field(10.0, ge=1.0, description="Largest inverse-examination weight an event gets.")
    min_rate: float = Field(
        0.2, gt=0.0, le=1.0, description="A pair is relevant when its events per examined impression reach this..."
    )
    confidence: float = Field(
        0.9,
        ge=0.0,
        lt=1.0,
        description="...as the low end of its Wilson interval at this confidence, the examined impressions as trials "
        "(a stray click where few look is no evidence); 0: the rate itself...",
    )
    min_searches: int = Field(2, ge=1, description="...with events in at least this many searches.")
    split_by: str = Field(
        "time", description="time: the latest test_days are the test queries; or query, or an item column."
    )
    test_days: float = Field(
        1.0, gt=0.0, description="split_by time: queries first searched in the last days are test."
    )
    valid_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5, description="Test share when split_by is not time.")
    min_test_queries: int = Field(30, ge=1, description="Fewer test queries with a relevant item fail the build.")
    bot_searches_per_minute: float = Field(20.0, gt=0.0, description="A session searching faster is a bot.")
    bot_clicks_per_search: float = Field(
        4.0, gt=0.0, description="A session clicking more results a search (over 3 or more) is a bot."
    )
    clock_skew_seconds: float = Field(
        300.0, ge=0.0, description="Events stamped this much before their search are kept."
    )
    seed: int = 0

    @field_validator("grades")
    @classmethod
    def every_event_graded(cls, grades: dict[str, int]) -> dict[str, int]:
        if set(grades) != set(EVENTS) or min(grades.values()) < 1:
            raise ValueError(f"give each of {', '.join(EVENTS)} a grade >= 1, got {grades}")
        return grades


class ImportConfig(BaseModel):
    """Parameters of one import (`smar data import`; later the `import` section of params.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["table", "jd_tsv"] = Field(
        "table", description="table: CSV/JSONL/Parquet files; jd_tsv: an id-encoded release."
    )
    items: Path | None = Field(None, description="table: the items file.")
    queries: Path | None = Field(None, description="table: the queries file.")
    interactions: Path | None = Field(None, description="table: the interactions file.")
    images_dir: Path | None = Field(
        None, description="table: folder the image column is relative to (default: the items file's folder)."
    )
    source_dir: Path | None = Field(None, description="jd_tsv: the release directory.")
    mapping: dict[str, dict[str, str | None]] = Field(
        default_factory=dict, description="table: {table: {contract column: source column or null}}."
    )
    label: Literal["clicks", "graded"] = Field(
        "clicks", description="clicks: summed per (query, item); graded: taken as is."
    )
    item_attributes: list[str] | None = Field(
        None, description="table: extra item columns to keep (default: every other column)."
    )
    drop_items_without_features: bool = Field(
        False, description="jd_tsv: drop items with no feature row instead of failing."
    )
    valid_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    seed: int = 0
    split_by: str = Field(
        BY_QUERY,
        min_length=1,
        description="query (a hash of the query id), or an item column: whole groups of items per split.",
    )
    name: str = Field("imported", min_length=1)
    version: str = Field("1", min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ImportConfig:
        if self.format == "table":
            missing = [f"{field} (--{field} FILE)" for field in SOURCE_TABLES if getattr(self, field) is None]
            if missing:
                raise ValueError(f"format 'table' needs {', '.join(missing)}")
            if self.source_dir is not None:
                raise ValueError(
                    "source_dir (--source) is for format 'jd_tsv'; a table import takes --items, --queries, "
                    "--interactions"
                )
        else:
            if self.source_dir is None:
                raise ValueError("format 'jd_tsv' needs source_dir (--source DIR)")
            given = [field for field in (*SOURCE_TABLES, "images_dir") if getattr(self, field) is not None]
            if given or self.mapping or self.item_attributes is not None:
                extra = (
                    given
                    + (["mapping (--map)"] if self.mapping else [])
                    + (["item_attributes"] if self.item_attributes is not None else [])
                )
                raise ValueError(f"{', '.join(extra)}: for format 'table' only; a jd_tsv release has a fixed layout")
        for table, columns in self.mapping.items():
            if table not in SOURCE_TABLES:
                raise ValueError(f"mapping: unknown table {table!r}; choose from {', '.join(SOURCE_TABLES)}")
            for column, source in columns.items():
                if column not in SOURCE_TABLES[table]:
                    raise ValueError(
                        f"mapping.{table}: unknown column {column!r}; {table} has {', '.join(SOURCE_TABLES[table])}"
                    )
                if source is None and (table, column) not in OPTIONAL_SOURCE_COLUMNS:
                    raise ValueError(f"mapping.{table}.{column}: required, it cannot be unmapped")
        if self.label == "graded" and self.mapping.get("interactions", {}).get("label", "label") is None:
            raise ValueError("label 'graded' needs a label column; map interactions.label to it")
        return self

    def source_column(self, table: str, column: str) -> str | None:
        return self.mapping.get(table, {}).get(column, column)


class SmarConfig(_Section):
    data: DataConfig = DataConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    model: ModelConfig = ModelConfig()
    featurize: FeaturizeConfig = FeaturizeConfig()
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()
    cluster: ClusterConfig = ClusterConfig()
    index: IndexConfig = IndexConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    register_: RegisterConfig = Field(RegisterConfig(), alias="register")
    serve: ServeConfig = ServeConfig()
    from_logs: FromLogsConfig = FromLogsConfig()
    import_: ImportConfig | None = Field(None, alias="import", description="`smar data import` with no source options.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def load_config(path: str | Path = "params.yaml", overrides: dict | None = None) -> SmarConfig:
    """The parameters file, with `overrides` (only the values a run sets, nested by section, e.g.
    {"train": {"epochs": 4}}; a None keeps the file's value) laid over it, validated as one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such parameters file. Pass --params FILE or run from the project root.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of step names to settings, got {type(raw).__name__}.")
    given = _values_set(overrides or {})
    try:
        return SmarConfig.model_validate(_merged(raw, given))
    except ValidationError as error:
        where = f"{path} with the run's overrides" if given else str(path)
        raise ConfigError(f"{where}: invalid parameters:\n{describe_invalid(error)}") from None


def _values_set(overrides: dict) -> dict:
    """The overrides without their empty (None) fields: a field left empty keeps the file's value."""
    kept = {}
    for key, value in overrides.items():
        value = _values_set(value) if isinstance(value, dict) else value
        if value is not None and value != {}:
            kept[key] = value
    return kept


def _merged(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = (
            _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        )
    return merged
