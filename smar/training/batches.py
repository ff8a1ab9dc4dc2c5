"""Training inputs: the catalog prepared once, and batches of (query, item) pairs assembled ahead of the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smar.training.distributed import Cluster

if TYPE_CHECKING:
    import torch

    from smar.features.store import ItemTextFeatures
    from smar.training.negatives import HardNegatives


@dataclass
class Catalog:
    """The whole catalog's inputs, prepared once: text as token ids or the frozen encoder's
    states (smar.features), images as decoded pixels or features (memory-mapped)."""

    text: dict | ItemTextFeatures  # token ids {"input_ids", "attention_mask"}, or states by row
    images: object  # uint8 pixels [N, 3, H, W] or features (arrays or ItemImageFeatures); None: no image tower
    item_ids: list[str]

    def inputs(self, rows) -> dict:
        """The item tower's inputs for these catalog rows, on the CPU."""
        from smar.data.image_cache import rows_to_tensor

        images = rows_to_tensor(self.images, rows) if self.images is not None else None
        if isinstance(self.text, dict):
            return {k: rows_to_tensor(v, rows) for k, v in self.text.items()} | {"images": images}
        return self.text.rows(rows) | {"images": images}

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

    pair_queries: torch.Tensor  # long [P]: row in the query tokens
    pair_items: torch.Tensor  # long [P]: row in the catalog
    pair_labels: torch.Tensor  # float [P]: the pair's label (a grade or a click count)
    query_tokens: dict
    catalog: Catalog
    negatives: HardNegatives | None = None  # each pair's hard negative is drawn from these (smar.training.negatives)

    def __len__(self) -> int:
        return len(self.pair_items)

    def __getitem__(self, key: tuple[int, list[int]]) -> dict:
        """Batch (epoch, pair indices): its queries and positive items (catalog rows), their labels
        and inputs; with hard negatives, `negatives` (a catalog row per pair), whose inputs follow
        the positives' in `item_inputs`."""
        import torch

        from smar.data.image_cache import rows_to_tensor

        epoch, indices = key
        indices = torch.as_tensor(indices)
        queries, items = self.pair_queries[indices], self.pair_items[indices]
        batch = {
            "queries": queries,
            "items": items,
            "labels": self.pair_labels[indices],
            "query_tokens": {k: rows_to_tensor(v, queries) for k, v in self.query_tokens.items()},
        }
        rows = items
        if self.negatives is not None:
            batch["negatives"] = self.negatives.draw(queries, items, indices, epoch)
            rows = torch.cat([items, batch["negatives"]])
        return batch | {"item_inputs": self.catalog.inputs(rows)}

    def loader(self, workers: int, cluster: Cluster) -> Loader:
        return Loader(self, workers, cluster)


class Loader:
    """Batches on the training device, epoch after epoch: assembled by `workers` processes (started
    once) ahead of the model, and copied from pinned memory without blocking on CUDA."""

    def __init__(self, pairs: PairBatches, workers: int, cluster: Cluster):
        import torch
        from torch.utils.data import DataLoader

        self.cluster, self.batches, self.epoch_number = cluster, [], 0
        self.loader = DataLoader(
            pairs,
            sampler=self,
            batch_size=None,
            num_workers=workers,
            pin_memory=cluster.cuda,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers else None,
            generator=torch.Generator(),
        )  # leaves the global random state (dropout) alone

    def __iter__(self):  # the DataLoader's sampler: this epoch's batches of pair indices
        return ((self.epoch_number, batch) for batch in self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, batches: list[list[int]], epoch: int):
        import torch

        self.batches, self.epoch_number = batches, epoch
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
