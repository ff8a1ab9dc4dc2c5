"""Step 2, train: dataset + config -> checkpoint in `outputs/model`, tracked as one MLflow run.

Stage 1 aligns every item view the model kind trains (text, image, fused) to the query,
each with its own in-batch softmax loss and learned temperature, weighted alpha/beta/gamma.
Stage 2 (SMAR with adaptive routing) trains the routing head on the frozen towers.

Input: the catalog is prepared once: its images decoded into a memory-mapped cache
(`smar.image_cache`) and, with frozen pretrained encoders (`model.pretrained: frozen`, the
default), MiniLM's token states of every item text and training query and the backbone's
patch tokens of every image computed once into caches (`smar.feature_cache`), so training
runs only the towers on top of them. Later epochs, runs and the export reuse every cache.
DataLoader workers assemble batches ahead of the model (pinned memory, non-blocking copies
on CUDA).
On CUDA: bf16 autocast, channels_last for the CNN, fused AdamW, optional torch.compile.
`train.accumulation_steps` splits a batch into exact micro-batches (same negatives).

Several processes: `torchrun --nproc-per-node N -m smar train` runs DistributedDataParallel;
`train.batch_size` is the global batch, each rank draws its share of it from one
DistributedSampler shuffle, and the in-batch negatives are gathered from every rank with
their gradients, so N processes give one process's result at the same global batch. Rank 0
alone validates, checkpoints, logs to MLflow and saves the model.

Every `train.checkpoint_every_steps` the whole training state (weights, optimiser, schedule,
random state, position in the epoch, MLflow run id) goes to `outputs/checkpoint`. A
training that was killed, or that failed and is retried by Prefect, resumes from it with
the same MLflow run, when the configuration and the data are the same; it is removed once
the model is saved. The saved model carries its query tower as ONNX (`smar.onnx_query`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from smar.config import SmarConfig
from smar.data.validate import require_passed
from smar.paths import Paths, replace_on_success

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    model_dir: str
    run_id: str
    kind: str
    final_loss: float
    valid_recall_at_10: float
    seconds: float


def train(config: SmarConfig, paths: Paths) -> TrainResult | None:
    """Train on this machine, or as one rank of `torchrun` (then rank 0 returns the result, others None)."""
    import numpy as np
    import torch

    from smar import tracking
    from smar.data.contract import item_texts
    from smar.data.dataset import load_dataset
    from smar.model.checkpoint import image_feature_shape, save_model
    from smar.model.feature_cache import item_images, text_inputs
    from smar.model.onnx_query import save_query_onnx
    from smar.model.tokenizer import train_tokenizer
    from smar.model.two_tower import RetrievalModel

    require_passed(paths)
    started = time.perf_counter()
    settings = config.train
    cluster = Cluster.start(settings.device, settings.batch_size)
    torch.manual_seed(settings.seed)
    device = cluster.device
    dataset = load_dataset(paths.data)
    items = dataset.items.reset_index(drop=True)
    texts = item_texts(items)
    train_queries = dataset.split_queries("train")
    run_tags = tracking.run_tags(paths.data)
    checkpoint = Checkpoint(paths.checkpoint_dir, fingerprint(config, run_tags["data.dvc_md5"]))
    state = checkpoint.load()
    if state:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(state["tokenizer"])  # the ids the saved weights were trained with
    else:
        tokenizer = train_tokenizer(texts + train_queries["text"].tolist(), config.model)

    item_row = {item_id: row for row, item_id in enumerate(items["item_id"])}
    query_row = {query_id: row for row, query_id in enumerate(train_queries["query_id"])}
    train_qrels = dataset.split_qrels("train")
    pair_queries = torch.tensor(train_qrels["query_id"].map(query_row).to_numpy(), dtype=torch.long)
    pair_items = torch.tensor(train_qrels["item_id"].map(item_row).to_numpy(), dtype=torch.long)
    known_pairs = torch.sort(pair_queries * len(items) + pair_items).values.to(device)  # other positives are not negatives

    model = RetrievalModel(
        config.model, tokenizer.get_vocab_size(), settings.initial_temperature, image_feature_shape(paths.data), pretrained=True
    )
    model = cluster.prepare(model)
    length, cache = config.model.max_text_length, paths.cache_dir
    catalog = Catalog(
        text=cluster.main_first(lambda: text_inputs(model.item_text_encoder, tokenizer, texts, length, cache, "items")),
        images=cluster.main_first(lambda: item_images(model, paths.data, cache)),
        item_ids=items["item_id"].tolist(),
    )
    query_texts = train_queries["text"].tolist()
    query_inputs = cluster.main_first(lambda: text_inputs(model.query_encoder, tokenizer, query_texts, length, cache, "train-queries"))
    pairs = PairBatches(pair_queries, pair_items, query_inputs, catalog)
    valid_queries = dataset.split_queries("valid")
    valid_relevant = dataset.relevant_items("valid")

    if model.router is not None:
        model.router.requires_grad_(False)  # stage 2 trains it, on the frozen towers
    step_model = model
    if cluster.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(model, device_ids=[cluster.local_rank] if cluster.cuda else None)
    if settings.compile:
        step_model = torch.compile(step_model)
    pretrained = {id(p) for p in model.pretrained_parameters()}
    stage_one = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in stage_one if id(p) not in pretrained]},
        {"params": [p for p in stage_one if id(p) in pretrained], "lr": settings.learning_rate * settings.pretrained_lr_scale},
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=cluster.cuda)
    steps_per_epoch = len(cluster.epoch_batches(len(pairs), settings.seed, 1))
    total_steps = min(settings.epochs * steps_per_epoch, settings.max_steps or 10**12)
    warmup = max(1, total_steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    weights = {"text": settings.alpha, "image": settings.beta, "multimodal": settings.gamma}

    def step_loss(batch: dict):
        """Forward and backward over one (global) batch, in `accumulation_steps` micro-batches.

        Micro-batches are exact, as in open_clip: every one is scored against the whole batch's
        vectors (computed first without gradients), so the negatives and the gradient are the
        same as in one pass; only one micro-batch's activations are held at a time.
        """
        from smar.model.inference import autocast
        from smar.model.losses import multitask_loss

        positives, queries, views = batch["items"], batch["queries"], model.spec.losses

        def vectors(rows=None):
            if rows is None:
                return step_model(batch["query_tokens"], batch["item_inputs"], views)
            item_inputs = {k: v[rows] if v is not None else None for k, v in batch["item_inputs"].items()}
            return step_model({k: v[rows] for k, v in batch["query_tokens"].items()}, item_inputs, views)

        def loss_of(query_vectors, item_vectors):
            return multitask_loss(model, query_vectors, item_vectors, positives, queries, known_pairs, len(items), weights)

        if settings.accumulation_steps == 1:
            with autocast(device):
                query_vectors, item_vectors = vectors()
            loss, parts = loss_of(query_vectors, item_vectors)
            loss.backward()
            return loss, parts
        micro = torch.arange(len(positives), device=positives.device).tensor_split(settings.accumulation_steps)
        with torch.no_grad(), autocast(device):
            cached = [vectors(rows) for rows in micro]
        for j, rows in enumerate(micro):
            last = j == len(micro) - 1
            with step_model.no_sync() if cluster.world_size > 1 and not last else nullcontext():
                with autocast(device):
                    live = vectors(rows)
                pieces = [live if i == j else cached[i] for i in range(len(micro))]
                query_vectors = torch.cat([piece[0] for piece in pieces])
                item_vectors = {view: torch.cat([piece[1][view] for piece in pieces]) for view in views}
                loss, parts = loss_of(query_vectors, item_vectors)
                loss.backward()
        for scale in model.logit_scales.values():  # every micro-step saw the whole loss through the temperature
            if scale.grad is not None:
                scale.grad /= len(micro)
        return loss, parts

    mlflow = tracking.configure() if cluster.is_main else None
    step, first_epoch, batches_done, epoch_losses, valid_recall = 0, 1, 0, [], float("nan")
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        step, first_epoch, batches_done, epoch_losses = state["step"], state["epoch"], state["batches_done"], state["epoch_losses"]
    run_name = None if state else f"train-{config.model.kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    with mlflow.start_run(run_id=state["run_id"] if state else None, run_name=run_name) if mlflow else nullcontext() as run:
        if mlflow and state:
            log.info("resuming %s from %s: step %d of %d (epoch %d), MLflow run %s", config.model.kind, checkpoint.file, step, total_steps,
                     first_epoch, run.info.run_id)
            mlflow.set_tag("resumed_from_step", str(step))
        elif mlflow:
            mlflow.set_tags(run_tags | {"device": device, "model.kind": config.model.kind, "world_size": str(cluster.world_size)})
            mlflow.log_params(tracking.flatten(config.model_dump(mode="json", by_alias=True)))
            mlflow.log_params({"data.train_pairs": len(pair_items), "data.items": len(items), "train.total_steps": total_steps})
            mlflow.log_artifacts(str(paths.validation_report.parent), artifact_path="validation")  # report + HTML data docs
            log.info("training %s on %s x %d: %d pairs, %d items, %d steps", config.model.kind, device, cluster.world_size,
                     len(pair_items), len(items), total_steps)

        def save_checkpoint(epoch: int) -> None:
            if cluster.is_main:
                checkpoint.save({
                    "run_id": run.info.run_id, "step": step, "epoch": epoch, "batches_done": batches_done, "epoch_losses": epoch_losses,
                    "torch_rng": torch.get_rng_state(), "tokenizer": tokenizer.to_str(),
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                })

        if not state and settings.checkpoint_every_steps:
            save_checkpoint(1)  # from the start, so a retry always finds its MLflow run
        losses, loop_seconds, pairs_seen = [], 0.0, 0
        loader = pairs.loader(settings.loader_workers, cluster)
        with GpuMonitor(cluster.cuda) as gpu:
            for epoch in range(first_epoch, settings.epochs + 1):
                model.train()
                epoch_started = time.perf_counter()
                for batch in loader.epoch(cluster.epoch_batches(len(pairs), settings.seed, epoch)[batches_done:]):
                    if step >= total_steps:
                        break
                    loss, parts = step_loss(batch)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    schedule.step()
                    step, batches_done, pairs_seen = step + 1, batches_done + 1, pairs_seen + len(batch["items"]) * cluster.world_size
                    logged = cluster.mean({"train_loss": loss} | {f"train_loss_{view}": part for view, part in parts.items()})
                    epoch_losses.append(logged["train_loss"])
                    if mlflow:
                        mlflow.log_metrics(logged, step=step)
                    if settings.checkpoint_every_steps and step % settings.checkpoint_every_steps == 0:
                        save_checkpoint(epoch)
                loop_seconds += time.perf_counter() - epoch_started
                losses.extend(epoch_losses)
                if cluster.is_main:
                    valid_recall = routed_recall_at_10(model, tokenizer, catalog, valid_queries, valid_relevant)
                    epoch_loss = float(np.mean(epoch_losses)) if epoch_losses else float("nan")
                    mlflow.log_metrics({"epoch_loss": epoch_loss, "valid_recall_at_10": valid_recall}
                                       | {f"temperature_{view}": t for view, t in model.temperatures().items()}, step=epoch)
                    log.info("epoch %d/%d  loss %.3f  valid R@10 %.3f  (%.0f s)", epoch, settings.epochs, epoch_loss, valid_recall,
                             time.perf_counter() - started)
                batches_done, epoch_losses = 0, []
                if step >= total_steps:
                    break
        speed = {"train_loop_seconds": loop_seconds, "train_pairs_per_second": pairs_seen / loop_seconds if loop_seconds else 0.0} | gpu.summary()
        if not cluster.is_main:
            cluster.finish()
            return None

        if model.router is not None:
            train_relevant = dataset.relevant_items("train")
            router_stats = train_router(model, tokenizer, catalog, query_texts, [train_relevant[q] for q in train_queries["query_id"]], settings)
            valid_recall = routed_recall_at_10(model, tokenizer, catalog, valid_queries, valid_relevant)
            mlflow.log_metrics(router_stats | {"valid_recall_at_10_routed": valid_recall})
            log.info("routing head: %s; valid R@10 with routing %.3f", router_stats, valid_recall)

        with replace_on_success(paths.model_dir) as scratch:
            save_model(model.cpu().eval(), tokenizer, scratch)
            save_query_onnx(model, tokenizer, scratch, query_texts[:64])  # what serving encodes queries with
            tracking.save_run_id(scratch, run.info.run_id)
        checkpoint.remove()
        seconds = time.perf_counter() - started
        mlflow.log_metrics({"train_seconds": seconds} | speed)
        log.info("training loop: %.0f pairs/s %s", speed["train_pairs_per_second"], gpu.summary() or "")
    cluster.finish()
    final_loss = losses[-1] if losses else float("nan")
    return TrainResult(str(paths.model_dir), run.info.run_id, config.model.kind, final_loss, valid_recall, seconds)


@dataclass(frozen=True)
class Cluster:
    """This process's place in a `torchrun` job (or the whole job, on one process)."""

    rank: int
    local_rank: int
    world_size: int
    device: str
    local_batch: int

    @classmethod
    def start(cls, requested_device: str, batch_size: int) -> Cluster:
        import torch

        from smar.errors import ConfigError
        from smar.model.inference import resolve_device

        world, rank, local_rank = (int(os.environ.get(name, default)) for name, default in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
        device = resolve_device(requested_device)
        if world > 1:
            import torch.distributed as dist

            if batch_size % world:
                raise ConfigError(f"train.batch_size ({batch_size}) is the global batch: it must be a multiple of the {world} processes")
            if device == "cuda":
                torch.cuda.set_device(local_rank)
                device = f"cuda:{local_rank}"
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return cls(rank, local_rank, world, device, batch_size // world)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def epoch_batches(self, num_pairs: int, seed: int, epoch: int) -> list[list[int]]:
        """This rank's batches of pair indices for one epoch.

        DistributedSampler deals each rank every world_size-th index of one seeded shuffle, so
        step s on all ranks together covers exactly the pairs one process would take at step s
        with the same global batch.
        """
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(num_pairs), num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        indices = list(sampler)
        batches = [indices[start : start + self.local_batch] for start in range(0, len(indices), self.local_batch)]
        return [batch for batch in batches if len(batch) * self.world_size >= 2]  # one pair has no negatives

    def prepare(self, model):
        """The model on this rank's device: channels_last for the CNN and BatchNorm synchronised across GPUs on CUDA."""
        import torch

        if self.cuda and self.world_size > 1:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(self.device)
        if self.cuda and model.image_encoder is not None and model.image_encoder.backbone is not None:
            model.image_encoder.backbone.to(memory_format=torch.channels_last)
        return model

    def mean(self, values: dict) -> dict[str, float]:
        """Scalar tensors averaged over the ranks (each rank's loss covers its share of the batch)."""
        import torch

        stacked = torch.stack([value.detach().float() for value in values.values()])
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(stacked)
            stacked /= self.world_size
        return dict(zip(values, stacked.tolist()))

    def main_first(self, build):
        """`build()` on rank 0 first (it writes a cache), then on every rank (which reads it)."""
        if self.is_main and self.world_size > 1:
            build()
        self.barrier()
        return build()

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def finish(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


class GpuMonitor:
    """Samples GPU utilisation (through NVML, when installed) once a second while training runs."""

    def __init__(self, enabled: bool):
        self.enabled, self.samples = enabled, []

    def __enter__(self) -> GpuMonitor:
        import threading

        self._stop = threading.Event()
        if self.enabled:
            import torch

            torch.cuda.reset_peak_memory_stats()
            threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        import torch

        while not self._stop.wait(1.0):
            try:
                self.samples.append(torch.cuda.utilization())
            except Exception as error:  # no NVML (pip install nvidia-ml-py): memory is still reported
                log.info("GPU utilisation not available: %s", error)
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def summary(self) -> dict[str, float]:
        if not self.enabled:
            return {}
        import torch

        result = {"gpu_max_memory_mib": torch.cuda.max_memory_allocated() / 2**20}
        if self.samples:
            result["gpu_utilization_percent"] = float(sum(self.samples) / len(self.samples))
        return result


def fingerprint(config: SmarConfig, data_md5: str) -> str:
    """What a checkpoint must match to be resumed: the model and training settings, and the data."""
    settings = config.model_dump(mode="json", by_alias=True, include={"model", "train"})
    settings["train"] = {k: v for k, v in settings["train"].items() if k not in ("checkpoint_every_steps", "retries", "device")}
    return hashlib.sha256(json.dumps([settings, data_md5], sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """The training state in one file, replaced atomically (a kill leaves the old one or the new one)."""

    directory: Path
    fingerprint: str

    @property
    def file(self) -> Path:
        return self.directory / "training_state.pt"

    def save(self, state: dict) -> None:
        import torch

        self.directory.mkdir(parents=True, exist_ok=True)
        scratch = self.file.with_suffix(".tmp")
        torch.save(state | {"fingerprint": self.fingerprint}, scratch)
        os.replace(scratch, self.file)

    def load(self) -> dict | None:
        """The saved state, or None when there is none or it belongs to other settings or data."""
        import torch

        if not self.file.is_file():
            return None
        try:
            state = torch.load(self.file, weights_only=False)
        except Exception as error:  # a file cut short by a full disk, say: start afresh
            log.warning("%s: unreadable (%s); training starts from scratch", self.file, error)
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.info("%s: written for other settings or data; training starts from scratch", self.file)
            return None
        return state

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Catalog:
    """The whole catalog's inputs, prepared once: text as token ids or cached frozen-encoder
    states, images as decoded pixels or features (memory-mapped)."""

    text: dict
    images: object  # numpy array (memory-mapped): uint8 pixels [N, 3, H, W] or float features; None without an image tower
    item_ids: list[str]

    def inputs(self, rows) -> dict:
        """The item tower's inputs for these catalog rows, on the CPU."""
        from smar.data.image_cache import rows_to_tensor

        images = rows_to_tensor(self.images, rows) if self.images is not None else None
        return {k: rows_to_tensor(v, rows) for k, v in self.text.items()} | {"images": images}

    def vectors(self, model, views, batch_size: int = 512) -> dict:
        """Every item's vector for each view, on the CPU."""
        import torch

        from smar.model.inference import autocast

        device = next(model.parameters()).device
        chunks = []
        with torch.inference_mode(), autocast(device.type):
            for start in range(0, len(self.item_ids), batch_size):
                rows = torch.arange(start, min(start + batch_size, len(self.item_ids)))
                inputs = _to_device(self.inputs(rows), device)
                vectors = model.encode_items(**inputs, views=views)
                chunks.append({view: vector.float().cpu() for view, vector in vectors.items()})
        return {view: torch.cat([chunk[view] for chunk in chunks]) for view in views}


@dataclass
class PairBatches:
    """Training pairs, read a whole batch at a time: `dataset[list of pair indices]` -> batch dict."""

    pair_queries: object  # long tensor [P]: row in the query tokens
    pair_items: object  # long tensor [P]: row in the catalog
    query_tokens: dict
    catalog: Catalog

    def __len__(self) -> int:
        return len(self.pair_items)

    def __getitem__(self, indices: list[int]) -> dict:
        import torch

        from smar.data.image_cache import rows_to_tensor

        indices = torch.as_tensor(indices)
        queries, items = self.pair_queries[indices], self.pair_items[indices]
        return {
            "queries": queries,
            "items": items,
            "query_tokens": {k: rows_to_tensor(v, queries) for k, v in self.query_tokens.items()},
            "item_inputs": self.catalog.inputs(items),
        }

    def loader(self, workers: int, cluster: Cluster) -> Loader:
        return Loader(self, workers, cluster)


class Loader:
    """Batches on the training device, epoch after epoch: assembled by `workers` processes (started
    once) ahead of the model, and copied from pinned memory without blocking on CUDA."""

    def __init__(self, pairs: PairBatches, workers: int, cluster: Cluster):
        import torch
        from torch.utils.data import DataLoader

        self.cluster, self.batches = cluster, []
        self.loader = DataLoader(pairs, sampler=self, batch_size=None, num_workers=workers, pin_memory=cluster.cuda,
                                 persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                                 generator=torch.Generator())  # leaves the global random state (dropout) alone

    def __iter__(self):  # the DataLoader's sampler: this epoch's batches of pair indices
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, batches: list[list[int]]):
        import torch

        self.batches = batches
        for batch in self.loader:
            batch = _to_device(batch, self.cluster.device)
            images = batch["item_inputs"]["images"]
            if self.cluster.cuda and images is not None and images.ndim == 4:
                batch["item_inputs"]["images"] = images.contiguous(memory_format=torch.channels_last)
            yield batch


def _to_device(value, device):
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value.to(device, non_blocking=True) if value is not None else None


def routed_recall_at_10(model, tokenizer, catalog: Catalog, queries, relevant) -> float:
    """Recall@10 of the model as served (through the routing head when it has one)."""
    from smar import metrics
    from smar.model.inference import encode_texts
    from smar.model.kinds import served_views

    if queries.empty:
        return float("nan")
    model.eval()
    views = served_views(model.config)
    item_vectors = catalog.vectors(model, views)
    query_vectors = encode_texts(model, tokenizer, queries["text"].tolist())
    top = routed_scores(model, query_vectors, item_vectors).topk(min(10, len(catalog.item_ids)), dim=1).indices.numpy()
    rankings = {q: [catalog.item_ids[i] for i in row] for q, row in zip(queries["query_id"], top)}
    return metrics.retrieval_metrics(rankings, relevant, ks=(10,))["recall@10"]


def routed_scores(model, query_vectors, item_vectors: dict):
    """Scores of every query against every item through the view the model serves it with."""
    import torch

    from smar.model.kinds import served_views

    views = served_views(model.config)
    if len(views) == 1:
        return query_vectors @ item_vectors[views[0]].T
    with torch.inference_mode():
        use_multimodal = model.route_to_multimodal(query_vectors).cpu()
    return torch.where(use_multimodal[:, None], query_vectors @ item_vectors["multimodal"].T, query_vectors @ item_vectors["text"].T)


def train_router(model, tokenizer, catalog: Catalog, query_texts, relevant: list[dict], settings) -> dict[str, float]:
    """Stage 2: teach the head P which item view serves each query better.

    Target per training query: 1 when the multimodal index ranks its relevant items better
    (nDCG@10) than the text index, 0 when the text index does; ties carry no signal and are
    left out. The towers stay frozen: only P learns, on the query vector.
    """
    import torch
    from torch.nn import functional as F

    from smar.model.inference import encode_texts

    model.eval()
    item_vectors = catalog.vectors(model, ("multimodal", "text"))
    query_vectors = encode_texts(model, tokenizer, query_texts)
    row_of = {item_id: row for row, item_id in enumerate(catalog.item_ids)}
    gains = {}
    for view in ("multimodal", "text"):
        top = (query_vectors @ item_vectors[view].T).topk(min(10, len(row_of)), dim=1).indices
        gains[view] = torch.tensor([_ndcg_at_10(row.tolist(), {row_of[i] for i in rel}) for row, rel in zip(top, relevant)])
    decisive = gains["multimodal"] != gains["text"]
    targets = (gains["multimodal"] > gains["text"]).float()[decisive]
    inputs = query_vectors[decisive]
    device = next(model.parameters()).device
    if len(inputs):
        model.router.requires_grad_(True)
        optimizer = torch.optim.Adam(model.router.parameters(), lr=1e-2)
        model.router.train()
        generator = torch.Generator().manual_seed(settings.seed)
        for _ in range(settings.router_epochs):
            for batch in torch.randperm(len(inputs), generator=generator).split(256):
                logits = model.router(inputs[batch].to(device)).squeeze(-1)
                loss = F.binary_cross_entropy_with_logits(logits, targets[batch].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        model.router.eval()
    with torch.inference_mode():
        routed = model.route_to_multimodal(query_vectors.to(device)).float().mean().item()
    return {
        "router_decisive_queries": float(len(inputs)),
        "router_multimodal_better": float(targets.sum().item()) if len(inputs) else 0.0,
        "router_train_fraction_multimodal": routed,
    }


def _ndcg_at_10(ranked_rows: list[int], relevant_rows: set[int]) -> float:
    dcg = sum(1.0 / math.log2(rank + 2) for rank, row in enumerate(ranked_rows[:10]) if row in relevant_rows)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(10, len(relevant_rows))))
    return dcg / ideal if ideal else 0.0
