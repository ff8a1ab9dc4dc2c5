"""One optimisation step: the optimiser and its schedule, and the loss of one (global) batch.

Stage 1 aligns every item view the model kind trains (text, image, fused) to the query,
each with its own in-batch softmax loss and learned temperature, weighted alpha/beta/gamma
(smar.model.losses; with `train.auxiliary_anneal` alpha and beta fall to 0 over training).
A batch's hard negatives (`train.hard_negatives`) are scored beside its in-batch ones, and
`train.graded_positives` weighs each pair by its label. `train.accumulation_steps` splits a
batch into exact micro-batches.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

from smar.core.config import TrainConfig
from smar.model.inference import autocast
from smar.model.losses import multitask_loss
from smar.training.distributed import Cluster


def make_optimizer(model, settings: TrainConfig, cuda: bool):
    """AdamW over the trainable parameters; pretrained weights learn at `pretrained_lr_scale` of the rate."""
    import torch

    pretrained = {id(p) for p in model.pretrained_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) not in pretrained]},
        {
            "params": [p for p in trainable if id(p) in pretrained],
            "lr": settings.learning_rate * settings.pretrained_lr_scale,
        },
    ]
    return torch.optim.AdamW(groups, lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=cuda)


def make_schedule(optimizer, total_steps: int):
    """Linear warm-up over the first 5% of the steps, then cosine decay to zero."""
    import torch

    warmup = max(1, total_steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        ),
    )


class Objective:
    """Forward and backward over one global batch; returns (loss, loss per item view).

    Micro-batches are exact, as in open_clip: every one is scored against the whole batch's
    vectors (computed first without gradients), so the negatives and the gradient are the
    same as in one pass; only one micro-batch's activations are held at a time.
    """

    def __init__(self, model, step_model, known_pairs, num_items: int, settings: TrainConfig, cluster: Cluster):
        self.model, self.step_model, self.cluster = model, step_model, cluster  # step_model: wrapped for DDP / compile
        self.known_pairs, self.num_items = known_pairs, num_items  # other positives of a query are not its negatives
        self.micro_batches, self.settings = settings.accumulation_steps, settings

    def weights(self, progress: float) -> dict[str, float]:
        """alpha, beta, gamma at this point of the training (`progress`: the share of steps done)."""
        settings = self.settings
        auxiliary = 1.0 - progress if settings.auxiliary_anneal else 1.0
        return {"text": settings.alpha * auxiliary, "image": settings.beta * auxiliary, "multimodal": settings.gamma}

    def __call__(self, batch: dict, progress: float = 0.0):
        weights = self.weights(progress)
        if self.micro_batches == 1:
            with autocast(self.cluster.device):
                query_vectors, item_vectors = self._vectors(batch)
            loss, parts = self._loss(batch, query_vectors, item_vectors, weights)
            loss.backward()
            return loss, parts
        return self._in_micro_batches(batch, weights)

    def _in_micro_batches(self, batch: dict, weights: dict):
        import torch

        micro = torch.arange(len(batch["items"]), device=batch["items"].device).tensor_split(self.micro_batches)
        with torch.no_grad(), autocast(self.cluster.device):
            cached = [self._vectors(batch, rows) for rows in micro]
        for j, rows in enumerate(micro):
            last = j == len(micro) - 1
            with self.step_model.no_sync() if self.cluster.world_size > 1 and not last else nullcontext():
                with autocast(self.cluster.device):
                    live = self._vectors(batch, rows)
                pieces = [live if i == j else cached[i] for i in range(len(micro))]
                query_vectors = torch.cat([piece[0] for piece in pieces])
                item_vectors = {  # the positives of every micro-batch, then their hard negatives
                    view: torch.cat(
                        [piece[1][view][: len(part)] for piece, part in zip(pieces, micro)]
                        + [piece[1][view][len(part) :] for piece, part in zip(pieces, micro)]
                    )
                    for view in self.model.spec.losses
                }
                loss, parts = self._loss(batch, query_vectors, item_vectors, weights)
                loss.backward()
        for scale in self.model.logit_scales.values():  # every micro-step saw the whole loss through the temperature
            if scale.grad is not None:
                scale.grad /= len(micro)
        return loss, parts

    def _vectors(self, batch: dict, rows=None):
        """(query vectors, item vectors by view) of the batch, or of its pairs `rows` (their positives, then their
        hard negatives)."""
        import torch

        queries, items = batch["query_tokens"], batch["item_inputs"]
        if rows is not None:
            item_rows = rows
            if "negatives" in batch:
                item_rows = torch.cat([rows, rows + len(batch["items"])])
            queries = {k: v[rows] for k, v in queries.items()}
            items = {k: v[item_rows] if v is not None else None for k, v in items.items()}
        return self.step_model(queries, items, self.model.spec.losses)

    def _loss(self, batch: dict, query_vectors, item_vectors, weights: dict):
        import torch

        item_ids = batch["items"]
        if "negatives" in batch:
            item_ids = torch.cat([item_ids, batch["negatives"]])
        pair_weights = 1.0 + batch["labels"].float().clamp(min=1).log() if self.settings.graded_positives else None
        return multitask_loss(
            self.model,
            query_vectors,
            item_vectors,
            item_ids,
            batch["queries"],
            self.known_pairs,
            self.num_items,
            weights,
            pair_weights,
        )
