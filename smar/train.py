"""Step 2, train: dataset + config -> checkpoint in `outputs/model`, tracked as one MLflow run.

Stage 1 aligns every item view the model kind trains (text, image, fused) to the query,
each with its own in-batch softmax loss and learned temperature, weighted alpha/beta/gamma.
Stage 2 (SMAR with adaptive routing) trains the routing head on the frozen towers.

Every `train.checkpoint_every_steps` the whole training state (weights, optimiser, schedule,
random states, position in the epoch, MLflow run id) goes to `outputs/checkpoint`. A
training that was killed, or that failed and is retried by Prefect, resumes from it with
the same MLflow run, when the configuration and the data are the same; it is removed once
the model is saved.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from smar.config import SmarConfig
from smar.paths import Paths, replace_on_success
from smar.validate import require_passed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    model_dir: str
    run_id: str
    kind: str
    final_loss: float
    valid_recall_at_10: float
    seconds: float


def train(config: SmarConfig, paths: Paths) -> TrainResult:
    import numpy as np
    import torch

    from smar import tracking
    from smar.dataset import load_dataset
    from smar.model import (
        RetrievalModel,
        autocast,
        image_feature_shape,
        item_images,
        item_text,
        multitask_loss,
        resolve_device,
        save_model,
        tokenize,
        train_tokenizer,
    )

    require_passed(paths)
    started = time.perf_counter()
    settings = config.train
    torch.manual_seed(settings.seed)
    device = resolve_device(settings.device)
    dataset = load_dataset(paths.data)
    items = dataset.items.reset_index(drop=True)
    item_texts = [item_text(*row) for row in zip(items["title"], items["category"], items["brand"])]
    train_queries = dataset.split_queries("train")
    run_tags = tracking.run_tags(paths.data)
    checkpoint = Checkpoint(paths.checkpoint_dir, fingerprint(config, run_tags["data.dvc_md5"]))
    state = checkpoint.load()
    if state:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(state["tokenizer"])  # the ids the saved weights were trained with
    else:
        tokenizer = train_tokenizer(item_texts + train_queries["text"].tolist(), config.model)

    item_row = {item_id: row for row, item_id in enumerate(items["item_id"])}
    query_row = {query_id: row for row, query_id in enumerate(train_queries["query_id"])}
    train_qrels = dataset.split_qrels("train")
    pair_queries = torch.tensor(train_qrels["query_id"].map(query_row).to_numpy(), dtype=torch.long)
    pair_items = torch.tensor(train_qrels["item_id"].map(item_row).to_numpy(), dtype=torch.long)
    known_pairs = torch.sort(pair_queries * len(items) + pair_items).values.to(device)  # other positives are not negatives

    catalog = Catalog(
        tokens=tokenize(tokenizer, item_texts),
        images=item_images(paths.data, items["image"], config.model.image_size),
        item_ids=items["item_id"].tolist(),
    )
    query_tokens = tokenize(tokenizer, train_queries["text"].tolist())
    valid_queries = dataset.split_queries("valid")
    valid_relevant = dataset.relevant_items("valid")

    model = RetrievalModel(
        config.model, tokenizer.get_vocab_size(), settings.initial_temperature, image_feature_shape(paths.data), pretrained=True
    ).to(device)
    pretrained = {id(p) for p in model.pretrained_parameters()}
    stage_one = [p for name, p in model.named_parameters() if not name.startswith("router.")]
    groups = [
        {"params": [p for p in stage_one if id(p) not in pretrained]},
        {"params": [p for p in stage_one if id(p) in pretrained], "lr": settings.learning_rate * settings.pretrained_lr_scale},
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(pair_items) / settings.batch_size)
    total_steps = min(settings.epochs * steps_per_epoch, settings.max_steps or 10**12)
    warmup = max(1, total_steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    weights = {"text": settings.alpha, "image": settings.beta, "multimodal": settings.gamma}

    mlflow = tracking.configure()
    generator = torch.Generator().manual_seed(settings.seed)
    step, first_epoch, batches_done, epoch_losses, valid_recall = 0, 1, 0, [], float("nan")
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        generator.set_state(state["epoch_rng"])
        step, first_epoch, batches_done, epoch_losses = state["step"], state["epoch"], state["batches_done"], state["epoch_losses"]
    run_name = None if state else f"train-{config.model.kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    with mlflow.start_run(run_id=state["run_id"] if state else None, run_name=run_name) as run:
        if state:
            log.info("resuming %s from %s: step %d of %d (epoch %d), MLflow run %s", config.model.kind, checkpoint.file, step, total_steps,
                     first_epoch, run.info.run_id)
            mlflow.set_tag("resumed_from_step", str(step))
        else:
            mlflow.set_tags(run_tags | {"device": device, "model.kind": config.model.kind})
            mlflow.log_params(tracking.flatten(config.model_dump(mode="json", by_alias=True)))
            mlflow.log_params({"data.train_pairs": len(pair_items), "data.items": len(items), "train.total_steps": total_steps})
            mlflow.log_artifacts(str(paths.validation_report.parent), artifact_path="validation")  # report + HTML data docs
            log.info("training %s on %s: %d pairs, %d items, %d steps", config.model.kind, device, len(pair_items), len(items), total_steps)

        def save_checkpoint(epoch: int, epoch_rng) -> None:
            checkpoint.save({
                "run_id": run.info.run_id, "step": step, "epoch": epoch, "batches_done": batches_done, "epoch_losses": epoch_losses,
                "epoch_rng": epoch_rng, "torch_rng": torch.get_rng_state(), "tokenizer": tokenizer.to_str(),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            })

        if not state and settings.checkpoint_every_steps:
            save_checkpoint(1, generator.get_state())  # from the start, so a retry always finds its MLflow run
        losses = []
        for epoch in range(first_epoch, settings.epochs + 1):
            model.train()
            epoch_rng = generator.get_state()  # the epoch's order is redrawn from this on resume
            for position, batch in enumerate(torch.randperm(len(pair_items), generator=generator).split(settings.batch_size)):
                if position < batches_done:
                    continue  # done before the checkpoint
                if step >= total_steps or len(batch) < 2:
                    break
                queries, positives = pair_queries[batch].to(device), pair_items[batch].to(device)
                with autocast(device):
                    query_vectors = model.encode_queries(**{k: v[pair_queries[batch]].to(device) for k, v in query_tokens.items()})
                    item_vectors = model.encode_items(**catalog.batch(pair_items[batch], device), views=model.spec.losses)
                loss, parts = multitask_loss(model, query_vectors, item_vectors, positives, queries, known_pairs, len(items), weights)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step, batches_done = step + 1, position + 1
                epoch_losses.append(loss.item())
                mlflow.log_metrics({"train_loss": loss.item()} | {f"train_loss_{view}": part.item() for view, part in parts.items()}, step=step)
                if settings.checkpoint_every_steps and step % settings.checkpoint_every_steps == 0:
                    save_checkpoint(epoch, epoch_rng)
            losses.extend(epoch_losses)

            valid_recall = routed_recall_at_10(model, tokenizer, catalog, valid_queries, valid_relevant)
            epoch_loss = float(np.mean(epoch_losses)) if epoch_losses else float("nan")
            mlflow.log_metrics({"epoch_loss": epoch_loss, "valid_recall_at_10": valid_recall}
                               | {f"temperature_{view}": t for view, t in model.temperatures().items()}, step=epoch)
            log.info("epoch %d/%d  loss %.3f  valid R@10 %.3f  (%.0f s)", epoch, settings.epochs, epoch_loss, valid_recall, time.perf_counter() - started)
            batches_done, epoch_losses = 0, []
            if step >= total_steps:
                break

        if model.router is not None:
            query_texts = train_queries["text"].tolist()
            train_relevant = dataset.relevant_items("train")
            router_stats = train_router(model, tokenizer, catalog, query_texts, [train_relevant[q] for q in train_queries["query_id"]], settings)
            valid_recall = routed_recall_at_10(model, tokenizer, catalog, valid_queries, valid_relevant)
            mlflow.log_metrics(router_stats | {"valid_recall_at_10_routed": valid_recall})
            log.info("routing head: %s; valid R@10 with routing %.3f", router_stats, valid_recall)

        with replace_on_success(paths.model_dir) as scratch:
            save_model(model.cpu(), tokenizer, scratch)
            tracking.save_run_id(scratch, run.info.run_id)
        checkpoint.remove()
        seconds = time.perf_counter() - started
        mlflow.log_metrics({"train_seconds": seconds, "train_pairs_per_second": step * settings.batch_size / seconds})
    final_loss = losses[-1] if losses else float("nan")
    return TrainResult(str(paths.model_dir), run.info.run_id, config.model.kind, final_loss, valid_recall, seconds)


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
    """The whole catalog, tokenised and decoded once for training."""

    tokens: dict
    images: object  # uint8 tensor [N, 3, H, W]
    item_ids: list[str]

    def batch(self, rows, device: str) -> dict:
        return {k: v[rows].to(device) for k, v in self.tokens.items()} | {"images": self.images[rows].to(device)}

    def vectors(self, model, views, batch_size: int = 512) -> dict:
        """Every item's vector for each view, on the CPU."""
        import torch

        from smar.model import autocast

        device = next(model.parameters()).device.type
        chunks = []
        with torch.inference_mode(), autocast(device):
            for start in range(0, len(self.item_ids), batch_size):
                rows = torch.arange(start, min(start + batch_size, len(self.item_ids)))
                vectors = model.encode_items(**self.batch(rows, device), views=views)
                chunks.append({view: vector.float().cpu() for view, vector in vectors.items()})
        return {view: torch.cat([chunk[view] for chunk in chunks]) for view in views}


def routed_recall_at_10(model, tokenizer, catalog: Catalog, queries, relevant) -> float:
    """Recall@10 of the model as served (through the routing head when it has one)."""
    from smar import metrics
    from smar.model import encode_texts, served_views

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

    from smar.model import served_views

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

    from smar.model import encode_texts

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
