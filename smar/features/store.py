"""Feature shards on disk, and the readers that give a tower its inputs for any rows.

A shard is one directory, written under a scratch name and renamed into place when complete:

- item text (`text-…`): MiniLM's last hidden states of each item text, without padding:
  `tokens.npy` int8 [T, H] (the shard's texts' tokens back to back), `scales.npy` float16 [T]
  (each token's scale: its state is tokens x scale), `lengths.npy` int16 [n] (tokens per text);
- item image (`image-…`): the backbone's patch tokens of each image, `tokens.npy` int8 [n, P, C]
  and `scales.npy` float16 [n, P];
- query text (`query-…`): MiniLM's pooled vector of each query (the query tower reads nothing
  else of a frozen encoder), `tokens.npy` int8 [n, H] and `scales.npy` float16 [n].

Int8 with one scale per token (its largest absolute value maps to 127) keeps MiniLM's pooled
vectors at cosine 0.99999 of float32 (docs/scale.md), at a quarter of float32's bytes.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from smar.core.errors import SmarError

if TYPE_CHECKING:
    import numpy as np
    import torch

TOKENS, SCALES, LENGTHS = "tokens.npy", "scales.npy", "lengths.npy"
FORMAT = 1  # in every shard's key: shards of another layout are never read
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFullError(SmarError):
    """A feature shard did not fit on its disk."""


def quantize(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [..., C] -> (int8 [..., C], float16 scales [...]): symmetric, one scale per vector."""
    import numpy as np

    scales = (np.abs(states).max(axis=-1) / 127.0).astype(np.float16)
    divisor = np.where(scales > 0, scales, 1).astype(np.float32)[..., None]
    return np.clip(np.rint(states / divisor), -127, 127).astype(np.int8), scales


def dequantize(tokens: np.ndarray, scales: np.ndarray) -> np.ndarray:
    import numpy as np

    return tokens.astype(np.float32) * scales.astype(np.float32)[..., None]


def write_shard(directory: Path, arrays: dict[str, np.ndarray]) -> int:
    """Write `arrays` (file name -> array) as the shard `directory`, all or nothing; its bytes.

    The free space is checked first; a disk that fills anyway (another writer) leaves no
    partial shard, and the error names the directory and the bytes the shard needed.
    """
    import numpy as np

    needed = sum(array.nbytes + 128 for array in arrays.values())
    directory.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory.parent).free
    if free < needed:
        raise _disk_full(directory, needed, free)
    scratch = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        scratch.mkdir()
        for name, array in arrays.items():
            with open(scratch / name, "wb") as out:
                np.save(out, array)
                out.flush()
                os.fsync(out.fileno())
        os.replace(scratch, directory)
    except OSError as error:
        shutil.rmtree(scratch, ignore_errors=True)
        if error.errno in NO_SPACE or error.errno is None:  # None: numpy's short write
            free = shutil.disk_usage(directory.parent).free
            raise _disk_full(directory, needed, free, error.strerror or str(error)) from None
        if not directory.is_dir():  # another worker published the same shard first: theirs is identical
            raise
    return needed


def _disk_full(directory: Path, needed: int, free: int, reason: str = "disk full") -> DiskFullError:
    return DiskFullError(
        f"{directory.parent}: no space for feature shard {directory.name} ({reason}): it needs {needed:,} bytes "
        f"and {free:,} are free there. Free space (or point --out at a larger disk) and run again: the finished "
        f"shards are kept."
    )


class ItemTextFeatures:
    """Every item text's token states over the catalog's shards: `rows(rows)` pads a batch."""

    def __init__(self, shards: list[Path]):
        import numpy as np

        self.shards = [Path(shard) for shard in shards]
        self._lengths = [np.load(shard / LENGTHS).astype(np.int64) for shard in self.shards]
        self._offsets = [np.concatenate([[0], np.cumsum(lengths)]) for lengths in self._lengths]
        self._first_rows = np.cumsum([0] + [len(lengths) for lengths in self._lengths])
        self._open()

    def _open(self) -> None:
        import numpy as np

        self._tokens = [np.load(shard / TOKENS, mmap_mode="r") for shard in self.shards]
        self._scales = [np.load(shard / SCALES, mmap_mode="r") for shard in self.shards]

    def __getstate__(self):  # DataLoader workers and Dask reopen the files rather than copy them
        return {k: v for k, v in self.__dict__.items() if k not in ("_tokens", "_scales")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return int(self._first_rows[-1])

    @property
    def width(self) -> int:
        return int(self._tokens[0].shape[1]) if self._tokens else 0

    def lengths(self) -> np.ndarray:
        import numpy as np

        return np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)

    def states(self, row: int) -> np.ndarray:
        """float32 [length, H]: one text's states."""
        import numpy as np

        shard = int(np.searchsorted(self._first_rows, row, side="right")) - 1
        local = row - self._first_rows[shard]
        start, end = self._offsets[shard][local], self._offsets[shard][local + 1]
        return dequantize(self._tokens[shard][start:end], self._scales[shard][start:end])

    def rows(self, rows) -> dict[str, torch.Tensor]:
        """{"states": float32 [B, longest, H], "attention_mask": bool [B, longest]} for catalog `rows`."""
        import numpy as np
        import torch

        texts = [self.states(int(row)) for row in np.asarray(rows).reshape(-1)]
        longest = max((len(text) for text in texts), default=0)
        states = np.zeros((len(texts), longest, self.width), dtype=np.float32)
        mask = np.zeros((len(texts), longest), dtype=np.bool_)
        for i, text in enumerate(texts):
            states[i, : len(text)], mask[i, : len(text)] = text, True
        return {"states": torch.from_numpy(states), "attention_mask": torch.from_numpy(mask)}


class _RowShards:
    """Fixed-size rows over shards (one array file per shard)."""

    names: tuple[str, ...] = ()

    def __init__(self, shards: list[Path]):
        import numpy as np

        self.shards = [Path(shard) for shard in shards]
        self._open()
        self._first_rows = np.cumsum([0] + [len(arrays[0]) for arrays in self._arrays])

    def _open(self) -> None:
        import numpy as np

        self._arrays = [[np.load(shard / name, mmap_mode="r") for name in self.names] for shard in self.shards]

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_arrays"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return int(self._first_rows[-1])

    def _gather(self, rows) -> list[np.ndarray]:
        """Each array's values at `rows`, read shard by shard in file order."""
        import numpy as np

        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        shard_of = np.searchsorted(self._first_rows, rows, side="right") - 1
        out = [np.empty((len(rows), *array.shape[1:]), dtype=array.dtype) for array in self._arrays[0]]
        for shard in np.unique(shard_of):
            chosen = np.flatnonzero(shard_of == shard)
            local = rows[chosen] - self._first_rows[shard]
            order = np.argsort(local, kind="stable")
            for target, array in zip(out, self._arrays[shard]):
                target[chosen[order]] = array[local[order]]
        return out


class _QuantizedRows(_RowShards):
    """int8 rows with a scale per vector: `rows(rows)` -> float32."""

    names = (TOKENS, SCALES)

    def rows(self, rows) -> torch.Tensor:
        import torch

        return torch.from_numpy(dequantize(*self._gather(rows)))


class ItemImageFeatures(_QuantizedRows):
    """Every item image's backbone patch tokens: `rows(rows)` -> float32 [B, P, C]."""


class QueryFeatures(_QuantizedRows):
    """The training queries' pooled MiniLM vectors: `rows(rows)` -> float32 [B, H]."""
