"""Step 3, train: dataset + config -> model in `outputs/model`, tracked as one run.

`train` reads as the steps of a training: prepare the model and its inputs once (`prepare`),
build the optimiser, open or resume the tracked run, run the epochs (`Training`), train the
routing head (SMAR with adaptive routing, stage 2), and save the model with its query tower
as ONNX (smar.model.onnx_query).

Inputs are prepared once: with frozen pretrained encoders (`model.pretrained: frozen`, the
default) they are the featurize step's output (MiniLM's token states of every item text, its
pooled vector of every training query, the backbone's patch tokens of every image:
smar.features), so training runs only the towers on top of them; an encoder that trains reads
token ids, or the catalog's images decoded into a memory-mapped cache (smar.data.image_cache).
DataLoader workers assemble batches ahead of the model (smar.training.batches). On CUDA: bf16
autocast, channels_last for the CNN, fused AdamW, optional torch.compile. Several processes:
smar.training.distributed. A killed or retried training resumes from its checkpoint with the
same tracked run: smar.training.resume.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from smar.core.config import SmarConfig
from smar.core.contract import item_texts
from smar.core.errors import ConfigError
from smar.core.paths import Paths, replace_on_success
from smar.core.progress import Progress
from smar.core.tracking import Tracker, flatten, lineage_tags, save_run_id
from smar.data.dataset import data_version, load_dataset
from smar.data.validation import require_passed
from smar.features import inputs
from smar.model.checkpoint import (
    image_feature_shape,
    load_own_weights,
    own_weights,
    save_model,
    save_trained_queries,
)
from smar.model.kinds import served_views
from smar.model.onnx_query import save_query_onnx
from smar.model.tokenizer import train_tokenizer
from smar.model.two_tower import RetrievalModel
from smar.training.batches import Catalog, PairBatches
from smar.training.blend import blend_with_zero_shot, residual_outputs
from smar.training.distributed import Cluster, GpuMonitor
from smar.training.negatives import Mined, Siblings
from smar.training.resume import Checkpoint, fingerprint
from smar.training.router import routed_score, train_router
from smar.training.step import Objective, make_optimizer, make_schedule

if TYPE_CHECKING:  # the heavy libraries are imported where they run
    import pandas as pd
    import torch
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """What one training reads, prepared once."""

    tokenizer: Tokenizer
    pairs: PairBatches  # (training query, relevant item) pairs, with the catalog's inputs
    known_pairs: torch.Tensor  # sorted query_row * num_items + item_row of every training pair
    query_ids: list[str]  # the training queries, in query-row order
    query_texts: list[str]
    train_relevant: list[dict]  # per training query: {item_id: label}
    valid_queries: pd.DataFrame  # the valid split's queries
    valid_relevant: dict

    @property
    def catalog(self) -> Catalog:
        return self.pairs.catalog


def train(config: SmarConfig, paths: Paths, tracker: Tracker | None = None) -> dict | None:
    """Train on this machine, or as one rank of `torchrun` (then rank 0 returns the result, others None)."""
    import torch

    require_passed(paths)
    started = time.perf_counter()
    cluster = Cluster.start(config.train.device, config.train.batch_size)
    torch.manual_seed(config.train.seed)
    tags = lineage_tags(data_version(paths.data))
    checkpoint = Checkpoint(paths.checkpoint_dir, fingerprint(config, tags["data.dvc_md5"]))
    saved = checkpoint.load()
    model, data = prepare(config, paths, cluster, tokenizer=_saved_tokenizer(saved))
    training = Training.start(config, model, data, cluster, checkpoint, saved)
    training.tracker = tracker if cluster.is_main else None
    training.run_id = _open_run(training, tags, saved, paths) if training.tracker else None
    try:
        valid_score = training.run_epochs(started)
        if not cluster.is_main:
            return None
        valid_score = _train_router(training, _blend_with_zero_shot(training, valid_score))
        _save(training, paths, tags)
        checkpoint.remove()
        seconds = time.perf_counter() - started
        training.log({"train_seconds": seconds} | training.speed)
        training.end()
    except BaseException:
        training.end(failed=True)
        raise
    finally:
        cluster.finish()
    log.info("training loop: %.0f pairs/s %s", training.speed["train_pairs_per_second"], training.gpu_summary or "")
    final_loss = training.losses[-1] if training.losses else float("nan")
    return {
        "model_dir": str(paths.model.root),
        "run_id": training.run_id,
        "kind": config.model.kind,
        "final_loss": final_loss,
        "valid": {config.evaluate.primary_metric: valid_score},
        "zero_shot_blend": training.zero_shot_blend,
        "seconds": seconds,
        "pairs_per_second": training.speed["train_pairs_per_second"],
    }


def prepare(config: SmarConfig, paths: Paths, cluster: Cluster, tokenizer=None) -> tuple[RetrievalModel, TrainingData]:
    """The model, initialised from the current random state, on this rank's device, and its
    inputs: the catalog's texts and images (featurized or decoded once) and the training pairs. `tokenizer`:
    the one a resumed checkpoint was trained with (default: built from the data)."""
    import torch

    dataset = load_dataset(paths.data)
    items = dataset.items.reset_index(drop=True)
    texts = item_texts(items)
    queries = dataset.split_queries("train")
    tokenizer = tokenizer or train_tokenizer(texts + queries["text"].tolist(), config.model)
    model = RetrievalModel(
        config.model,
        tokenizer.get_vocab_size(),
        config.train.initial_temperature,
        image_feature_shape(paths.data),
        pretrained=True,
    )
    model = cluster.prepare(model)
    features = inputs.features_for(model, paths)
    catalog = Catalog(
        text=inputs.item_text(model, tokenizer, texts, features),
        images=cluster.main_first(lambda: inputs.item_images(model, paths, features)),  # rank 0 decodes, once
        item_ids=items["item_id"].tolist(),
    )
    query_texts = queries["text"].tolist()
    query_inputs = inputs.training_queries(model, tokenizer, query_texts, features)
    qrels = dataset.split_qrels("train")
    query_row = {query_id: row for row, query_id in enumerate(queries["query_id"])}
    item_row = {item_id: row for row, item_id in enumerate(items["item_id"])}
    pair_queries = torch.tensor(qrels["query_id"].map(query_row).to_numpy(), dtype=torch.long)
    pair_items = torch.tensor(qrels["item_id"].map(item_row).to_numpy(), dtype=torch.long)
    pair_labels = torch.tensor(qrels["label"].to_numpy(), dtype=torch.float32)
    relevant = dataset.relevant_items("train")
    return model, TrainingData(
        tokenizer=tokenizer,
        pairs=PairBatches(
            pair_queries,
            pair_items,
            pair_labels,
            query_inputs,
            catalog,
            negatives=_hard_negatives(config, items, len(queries), paths),
        ),
        known_pairs=torch.sort(pair_queries * len(items) + pair_items).values.to(cluster.device),
        query_ids=queries["query_id"].astype(str).tolist(),
        query_texts=query_texts,
        train_relevant=[relevant[q] for q in queries["query_id"]],
        valid_queries=dataset.split_queries("valid"),
        valid_relevant=dataset.relevant_items("valid"),
    )


def _hard_negatives(config: SmarConfig, items: pd.DataFrame, num_queries: int, paths: Paths):
    """Where each pair's hard negative comes from (`train.hard_negatives`; None: in-batch negatives only)."""
    source = config.train.hard_negatives
    if source is None:
        return None
    if source == "mined":
        return Mined.empty(num_queries, len(items))
    if source not in items.columns:
        raise ConfigError(
            f"train.hard_negatives: {paths.data / 'items.parquet'} has no column {source!r} (its columns: "
            f"{', '.join(items.columns)}). Fix: mined, an item column (family, category), or null for in-batch "
            f"negatives only."
        )
    return Siblings.of(items[source])


@dataclass
class Training:
    """One training in progress: the model, its optimiser and where it is (step, epoch, losses)."""

    config: SmarConfig
    model: RetrievalModel
    data: TrainingData
    cluster: Cluster
    checkpoint: Checkpoint
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    objective: Objective
    total_steps: int
    step: int = 0
    first_epoch: int = 1
    batches_done: int = 0  # batches of the current epoch already trained (a resumed epoch skips them)
    epoch_losses: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    speed: dict = field(default_factory=dict)
    gpu_summary: dict = field(default_factory=dict)
    resumed: bool = False
    zero_shot_blend: float = 1.0  # the factor the trained branches were scaled by (smar.training.blend)
    tracker: Tracker | None = None
    run_id: str | None = None

    @classmethod
    def start(
        cls,
        config: SmarConfig,
        model: RetrievalModel,
        data: TrainingData,
        cluster: Cluster,
        checkpoint: Checkpoint,
        saved: dict | None,
    ):
        """The optimiser, schedule and objective for `model`; restored from `saved` when resuming."""
        import torch

        settings = config.train
        if model.router is not None:
            model.router.requires_grad_(False)  # stage 2 trains it, on the frozen towers
        step_model = model
        if cluster.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            step_model = DistributedDataParallel(model, device_ids=[cluster.local_rank] if cluster.cuda else None)
        if settings.compile:
            step_model = torch.compile(step_model)
        optimizer = make_optimizer(model, settings, cluster.cuda)
        steps_per_epoch = len(cluster.epoch_batches(len(data.pairs), settings.seed, 1))
        total_steps = min(settings.epochs * steps_per_epoch, settings.max_steps or 10**12)
        schedule = make_schedule(optimizer, total_steps)
        objective = Objective(model, step_model, data.known_pairs, len(data.catalog.item_ids), settings, cluster)
        training = cls(config, model, data, cluster, checkpoint, optimizer, schedule, objective, total_steps)
        if saved:
            training.restore(saved)
        return training

    def restore(self, saved: dict) -> None:
        import torch

        load_own_weights(self.model, saved["model"], self.checkpoint.file)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        torch.set_rng_state(saved["torch_rng"])
        self.resumed = True
        self.step, self.first_epoch, self.batches_done, self.epoch_losses = (
            saved["step"],
            saved["epoch"],
            saved["batches_done"],
            saved["epoch_losses"],
        )

    def save_state(self, epoch: int) -> None:
        import torch

        if self.cluster.is_main:
            self.checkpoint.save(
                {
                    "run_id": self.run_id,
                    "step": self.step,
                    "epoch": epoch,
                    "batches_done": self.batches_done,
                    "epoch_losses": self.epoch_losses,
                    "torch_rng": torch.get_rng_state(),
                    "tokenizer": self.data.tokenizer.to_str(),
                    "model": own_weights(self.model),  # the frozen encoders come from their packages
                    "optimizer": self.optimizer.state_dict(),
                    "schedule": self.schedule.state_dict(),
                }
            )

    def run_epochs(self, started: float) -> float:
        """Train until the last epoch or `max_steps`; returns the last validation score."""
        settings, valid_score = self.config.train, float("nan")
        if not self.resumed and settings.checkpoint_every_steps:
            self.save_state(1)  # from the start, so a retry always finds its tracked run
        loader, loop_seconds, pairs_seen = self.data.pairs.loader(settings.loader_workers, self.cluster), 0.0, 0
        with GpuMonitor(self.cluster.cuda) as gpu:
            for epoch in range(self.first_epoch, settings.epochs + 1):
                self.model.train()
                epoch_started = time.perf_counter()
                self.mine_negatives()
                batches = self.cluster.epoch_batches(len(self.data.pairs), settings.seed, epoch)[self.batches_done :]
                with Progress(
                    f"train epoch {epoch}/{settings.epochs}", len(batches), "batch", enabled=self.cluster.is_main
                ) as progress:
                    for batch in loader.epoch(batches, epoch):
                        if self.step >= self.total_steps:
                            break
                        self.train_step(batch, epoch)
                        pairs_seen += len(batch["items"]) * self.cluster.world_size
                        progress.advance()
                loop_seconds += time.perf_counter() - epoch_started
                if self.cluster.is_main:
                    valid_score = self.end_epoch(epoch, started)
                self.losses.extend(self.epoch_losses)
                self.batches_done, self.epoch_losses = 0, []
                if self.step >= self.total_steps:
                    break
        self.gpu_summary = gpu.summary()
        self.speed = {
            "train_loop_seconds": loop_seconds,
            "train_pairs_per_second": pairs_seen / loop_seconds if loop_seconds else 0.0,
        } | self.gpu_summary
        return valid_score

    def mine_negatives(self) -> None:
        """With `train.hard_negatives: mined`, each query's confusions under the model as it is now (every rank
        mines the same, from the same weights)."""
        pairs = self.data.pairs
        if isinstance(pairs.negatives, Mined):
            view = served_views(self.config.model)[0]
            pairs.negatives.mine(self.model, pairs.query_tokens, pairs.catalog, self.data.known_pairs, view)

    def train_step(self, batch: dict, epoch: int) -> None:
        loss, parts = self.objective(batch, progress=self.step / self.total_steps)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()
        self.step, self.batches_done = self.step + 1, self.batches_done + 1
        logged = self.cluster.mean({"train_loss": loss} | {f"train_loss_{view}": part for view, part in parts.items()})
        self.epoch_losses.append(logged["train_loss"])
        self.log(logged, step=self.step)
        if self.config.train.checkpoint_every_steps and self.step % self.config.train.checkpoint_every_steps == 0:
            self.save_state(epoch)

    def valid_score(self) -> float:
        """evaluate.primary_metric on the valid split, the model as served (NaN without valid queries)."""
        data = self.data
        return routed_score(
            self.model,
            data.tokenizer,
            data.catalog,
            data.valid_queries,
            data.valid_relevant,
            self.config.evaluate.primary,
        )

    def end_epoch(self, epoch: int, started: float) -> float:
        """The validation score after an epoch, logged with the epoch's mean loss and the temperatures."""
        primary, valid_score = self.config.evaluate.primary, self.valid_score()
        epoch_loss = sum(self.epoch_losses) / len(self.epoch_losses) if self.epoch_losses else float("nan")
        temperatures = {f"temperature_{view}": t for view, t in self.model.temperatures().items()}
        self.log({"epoch_loss": epoch_loss, primary.tracked("valid"): valid_score} | temperatures, step=epoch)
        log.info(
            "epoch %d/%d  loss %.3f  valid %s %.3f  (%.0f s)",
            epoch,
            self.config.train.epochs,
            epoch_loss,
            primary.label,
            valid_score,
            time.perf_counter() - started,
        )
        return valid_score

    def log(self, metrics: dict, step: int | None = None) -> None:
        if self.tracker:
            self.tracker.log_metrics(self.run_id, metrics, step=step)

    def end(self, failed: bool = False) -> None:
        if self.tracker and self.run_id:
            self.tracker.end_run(self.run_id, failed=failed)


def _saved_tokenizer(saved: dict | None):
    """The tokenizer a checkpoint's weights were trained with (its ids), or None."""
    if not saved:
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_str(saved["tokenizer"])


def _open_run(training: Training, tags: dict, saved: dict | None, paths: Paths) -> str:
    """The tracked run: the checkpoint's when resuming, else a new one with the settings, data and validation report."""
    config, tracker, cluster = training.config, training.tracker, training.cluster
    if saved and saved.get("run_id"):
        log.info(
            "resuming %s from %s: step %d of %d (epoch %d), run %s",
            config.model.kind,
            training.checkpoint.file,
            training.step,
            training.total_steps,
            training.first_epoch,
            saved["run_id"],
        )
        tracker.set_tags(saved["run_id"], {"resumed_from_step": str(training.step)})
        return saved["run_id"]
    run_id = tracker.start_run(
        f"train-{config.model.kind}-{time.strftime('%Y%m%d-%H%M%S')}",
        tags | {"device": cluster.device, "model.kind": config.model.kind, "world_size": str(cluster.world_size)},
    )
    tracker.log_params(run_id, flatten(config.model_dump(mode="json", by_alias=True)))
    pairs = training.data.pairs
    tracker.log_params(
        run_id,
        {
            "data.train_pairs": len(pairs),
            "data.items": len(pairs.catalog.item_ids),
            "train.total_steps": training.total_steps,
        },
    )
    tracker.log_artifacts(run_id, paths.validation.root, "validation")  # report + HTML data docs
    log.info(
        "training %s on %s x %d: %d pairs, %d items, %d steps",
        config.model.kind,
        cluster.device,
        cluster.world_size,
        len(pairs),
        len(pairs.catalog.item_ids),
        training.total_steps,
    )
    return run_id


def _blend_with_zero_shot(training: Training, valid_score: float) -> float:
    """Scale the trained branches back toward zero-shot MiniLM by the factor of `train.zero_shot_blend` that
    validates best (smar.training.blend); returns the validation score of the model kept."""
    factors, primary = training.config.train.zero_shot_blend, training.config.evaluate.primary
    if training.data.valid_queries.empty or not residual_outputs(training.model):
        return valid_score
    factor, scores = blend_with_zero_shot(training.model, factors, training.valid_score, known={1.0: valid_score})
    training.zero_shot_blend = factor
    training.log({"zero_shot_blend": factor} | {primary.tracked("valid", f"blend_{f:g}"): s for f, s in scores.items()})
    log.info(
        "zero-shot blend: %s; kept %g (valid %s %.3f, as trained %.3f)",
        ", ".join(f"{f:g}: {s:.3f}" for f, s in scores.items()),
        factor,
        primary.label,
        scores[factor],
        valid_score,
    )
    return scores[factor]


def _train_router(training: Training, valid_score: float) -> float:
    """Stage 2 (a model with a routing head): train it; returns the validation score as served."""
    model, data, primary = training.model, training.data, training.config.evaluate.primary
    if model.router is None:
        return valid_score
    stats = train_router(
        model, data.tokenizer, data.catalog, data.query_texts, data.train_relevant, training.config.train
    )
    valid_score = training.valid_score()
    training.log(stats | {primary.tracked("valid", "routed"): valid_score})
    log.info("routing head: %s; valid %s with routing %.3f", stats, primary.label, valid_score)
    return valid_score


def _save(training: Training, paths: Paths, tags: dict[str, str]) -> None:
    """The model, its tokenizer, its query tower as ONNX and the ids of the queries it trained on,
    replacing the last good model only when all are written."""
    with replace_on_success(paths.model.root) as scratch:
        save_model(training.model.cpu().eval(), training.data.tokenizer, scratch)
        save_query_onnx(
            training.model, training.data.tokenizer, scratch, training.data.query_texts[:64]
        )  # what serving encodes queries with
        save_trained_queries(
            scratch,
            training.data.query_ids,
            training.data.query_texts,
            {k.removeprefix("data."): v for k, v in tags.items() if k.startswith("data.")},
        )
        if training.run_id:
            save_run_id(scratch, training.run_id)
