"""Hard negatives (`train.hard_negatives`): one more negative item for each training pair, beside
the in-batch ones, scored in the losses of the views that see the image (smar.model.losses).

- `Siblings`: an item sharing the positive's value of an item column (family: the other
  colours of one listing), from the catalog's structure alone;
- `Mined`: one of the query's top results from the model being trained that is not a known
  positive, mined again at the start of every epoch (as sentence-transformers'
  `mine_hard_negatives` mines with a fixed model): the items the model confuses now.

Each pair's draw depends on its index and the epoch alone, so ranks and micro-batches draw what
one process draws; a pair with nothing to draw gets any catalog item, so every batch holds as
many negatives as pairs (ranks gather equal shapes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

MINED_DEPTH = 20  # a query's hard negatives are drawn from its top this many non-positive items


class HardNegatives(Protocol):
    def draw(self, queries: torch.Tensor, items: torch.Tensor, pairs: torch.Tensor, epoch: int) -> torch.Tensor:
        """A catalog row for each pair (its query row, positive item row and index)."""


@dataclass
class Siblings:
    """The items sharing each catalog row's value of one column."""

    by_group: torch.Tensor  # long [N]: catalog rows, grouped by value
    start: torch.Tensor  # long [N]: where row r's group begins in by_group
    size: torch.Tensor  # long [N]: its group's size (1: no sibling)
    position: torch.Tensor  # long [N]: row r's place within its group

    @classmethod
    def of(cls, values) -> Siblings:
        """From each catalog row's value of the column (a missing value makes a group of one)."""
        import numpy as np
        import pandas as pd
        import torch

        codes = pd.factorize(values.reset_index(drop=True))[0]
        codes = np.where(codes < 0, codes.max(initial=0) + 1 + np.arange(len(codes)), codes)
        order = np.argsort(codes, kind="stable")
        _, first, size = np.unique(codes[order], return_index=True, return_counts=True)
        group = np.searchsorted(np.unique(codes), codes)
        position = np.empty(len(codes), dtype=np.int64)
        position[order] = np.arange(len(codes)) - first[group[order]]
        arrays = (order, first[group], size[group], position)
        return cls(*(torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)) for array in arrays))

    def draw(self, queries: torch.Tensor, items: torch.Tensor, pairs: torch.Tensor, epoch: int) -> torch.Tensor:
        import torch

        draws = _draws(pairs, epoch)
        size = self.size[items]
        pick = draws % (size - 1).clamp(min=1)
        pick += pick >= self.position[items]  # skip the item itself
        sibling = self.by_group[(self.start[items] + pick).clamp(max=len(self.by_group) - 1)]
        return torch.where(size > 1, sibling, draws % len(self.by_group))


@dataclass
class Mined:
    """Each training query's top non-positive items under the model being trained."""

    rows: torch.Tensor  # long [Q, MINED_DEPTH]: catalog rows, best first; -1 past the last one found
    num_items: int

    @classmethod
    def empty(cls, num_queries: int, num_items: int) -> Mined:
        import torch

        return cls(torch.full((num_queries, MINED_DEPTH), -1, dtype=torch.long).share_memory_(), num_items)

    def mine(self, model, query_inputs: dict, catalog, known_pairs: torch.Tensor, view: str) -> None:
        """Rank the catalog for every training query in `view`, and keep each query's best items that
        are not its known positives. In place, in shared memory: DataLoader workers see it."""
        import torch

        from smar.core.topk import top_k
        from smar.data.image_cache import rows_to_tensor
        from smar.model.losses import is_known

        was_training = model.training
        model.eval()
        items = catalog.vectors(model, [view])[view]
        device = next(model.parameters()).device
        with torch.inference_mode():
            queries = torch.cat(
                [
                    model.encode_queries(
                        **{k: rows_to_tensor(v, rows).to(device) for k, v in query_inputs.items()}
                    ).cpu()
                    for rows in torch.arange(len(self.rows)).split(1024)
                ]
            )
        known = known_pairs.cpu()
        most_positives = int(torch.unique(known // self.num_items, return_counts=True)[1].max()) if len(known) else 0
        found = torch.from_numpy(top_k(queries, items, MINED_DEPTH + most_positives)[1])
        positive = is_known(torch.arange(len(found))[:, None] * self.num_items + found, known)
        order = torch.argsort(positive.to(torch.int8), dim=1, stable=True)[:, :MINED_DEPTH]  # non-positives first
        kept = found.gather(1, order).masked_fill(positive.gather(1, order), -1)
        self.rows.copy_(torch.nn.functional.pad(kept, (0, MINED_DEPTH - kept.shape[1]), value=-1))
        model.train(was_training)

    def draw(self, queries: torch.Tensor, items: torch.Tensor, pairs: torch.Tensor, epoch: int) -> torch.Tensor:
        import torch

        draws = _draws(pairs, epoch)
        candidates = self.rows[queries]
        count = (candidates >= 0).sum(1)
        mined = candidates[torch.arange(len(queries)), draws % count.clamp(min=1)]
        return torch.where(count > 0, mined, draws % self.num_items)


def _draws(pairs: torch.Tensor, epoch: int) -> torch.Tensor:
    """A well-spread non-negative int64 for each pair index and epoch (SplitMix64's finaliser)."""
    import numpy as np
    import torch

    x = pairs.numpy().astype(np.uint64) * np.uint64(1_000_003) + np.uint64(epoch)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return torch.from_numpy((x >> np.uint64(1)).astype(np.int64))
