"""Step 2, train: dataset + config -> checkpoint in `outputs/model`, tracked as one MLflow run."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from smar.config import SmarConfig
from smar.paths import Paths, replace_on_success
from smar.validate import require_passed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    model_dir: str
    run_id: str
    final_loss: float
    valid_recall_at_10: float
    seconds: float


def train(config: SmarConfig, paths: Paths) -> TrainResult:
    import numpy as np
    import torch

    from smar import metrics, tracking
    from smar.dataset import load_dataset
    from smar.model import (
        TwoTowerModel,
        autocast,
        encode_item_batch,
        encode_texts,
        images_to_tensor,
        in_batch_softmax_loss,
        item_text,
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
    tokenizer = train_tokenizer(item_texts + train_queries["text"].tolist(), config.model)

    item_row = {item_id: row for row, item_id in enumerate(items["item_id"])}
    query_row = {query_id: row for row, query_id in enumerate(train_queries["query_id"])}
    train_qrels = dataset.split_qrels("train")
    pair_queries = torch.tensor(train_qrels["query_id"].map(query_row).to_numpy(), dtype=torch.long)
    pair_items = torch.tensor(train_qrels["item_id"].map(item_row).to_numpy(), dtype=torch.long)
    known_pairs = torch.sort(pair_queries * len(items) + pair_items).values  # for masking other positives

    item_tokens = tokenize(tokenizer, item_texts)
    query_tokens = tokenize(tokenizer, train_queries["text"].tolist())
    item_images = images_to_tensor([paths.data / p for p in items["image"]], config.model.image_size)

    model = TwoTowerModel(config.model, tokenizer.get_vocab_size(), settings.initial_temperature).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(pair_items) / settings.batch_size)
    total_steps = min(settings.epochs * steps_per_epoch, settings.max_steps or 10**12)
    warmup = max(1, total_steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    valid_relevant = dataset.relevant_items("valid")
    valid_queries = dataset.split_queries("valid")

    mlflow = tracking.configure()
    with mlflow.start_run(run_name=f"train-{time.strftime('%Y%m%d-%H%M%S')}") as run:
        mlflow.set_tags(tracking.run_tags(paths.data) | {"device": device})
        mlflow.log_params(tracking.flatten(config.model_dump(mode="json", by_alias=True)))
        mlflow.log_params({"data.train_pairs": len(pair_items), "data.items": len(items), "train.total_steps": total_steps})
        log.info("training on %s: %d pairs, %d items, %d steps", device, len(pair_items), len(items), total_steps)

        generator = torch.Generator().manual_seed(settings.seed)
        step, losses, valid_recall = 0, [], float("nan")
        for epoch in range(1, settings.epochs + 1):
            model.train()
            epoch_losses = []
            for batch in torch.randperm(len(pair_items), generator=generator).split(settings.batch_size):
                if step >= total_steps or len(batch) < 2:
                    break
                queries, positives = pair_queries[batch], pair_items[batch]
                keys = queries[:, None] * len(items) + positives[None, :]
                also_relevant = torch.isin(keys, known_pairs) & ~torch.eye(len(batch), dtype=torch.bool)
                with autocast(device):
                    query_vectors = model.encode_queries(**{k: v[queries].to(device) for k, v in query_tokens.items()})
                    item_vectors = model.encode_items(
                        **{k: v[positives].to(device) for k, v in item_tokens.items()}, images=item_images[positives].to(device)
                    )
                loss = in_batch_softmax_loss(query_vectors, item_vectors, model.logit_scale, also_relevant.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                epoch_losses.append(loss.item())
                mlflow.log_metric("train_loss", loss.item(), step=step)
            losses.extend(epoch_losses)

            model.eval()
            item_vectors = torch.cat(
                [
                    encode_item_batch(model, tokenizer, item_texts[s : s + 512], item_images[s : s + 512])
                    for s in range(0, len(items), 512)
                ]
            )
            query_vectors = encode_texts(model, tokenizer, valid_queries["text"].tolist())
            top = (query_vectors @ item_vectors.T).topk(min(10, len(items)), dim=1).indices.numpy()
            rankings = {q: [items["item_id"][i] for i in row] for q, row in zip(valid_queries["query_id"], top)}
            valid_recall = metrics.retrieval_metrics(rankings, valid_relevant, ks=(10,))["recall@10"]
            epoch_loss = float(np.mean(epoch_losses)) if epoch_losses else float("nan")
            mlflow.log_metrics(
                {"epoch_loss": epoch_loss, "valid_recall_at_10": valid_recall, "temperature": model.temperature()}, step=epoch
            )
            log.info("epoch %d/%d  loss %.3f  valid R@10 %.3f  (%.0f s)", epoch, settings.epochs, epoch_loss, valid_recall, time.perf_counter() - started)
            if step >= total_steps:
                break

        with replace_on_success(paths.model_dir) as scratch:
            save_model(model.cpu(), tokenizer, scratch)
            tracking.save_run_id(scratch, run.info.run_id)
        seconds = time.perf_counter() - started
        mlflow.log_metrics({"train_seconds": seconds, "train_pairs_per_second": step * settings.batch_size / seconds})
    return TrainResult(str(paths.model_dir), run.info.run_id, losses[-1] if losses else float("nan"), valid_recall, seconds)
