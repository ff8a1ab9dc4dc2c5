"""Several training processes (`torchrun --nproc-per-node N -m smar train`) and the GPU they run on.

`train.batch_size` is the global batch: each rank draws its share of it from one
DistributedSampler shuffle, and the in-batch negatives are gathered from every rank with
their gradients (smar.model.losses), so N processes give one process's result at the same
global batch. Rank 0 alone validates, checkpoints, tracks and saves the model.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)


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

        from smar.core.errors import ConfigError
        from smar.model.inference import resolve_device

        world, rank, local_rank = (
            int(os.environ.get(name, default)) for name, default in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0))
        )
        device = resolve_device(requested_device)
        if world > 1:
            import torch.distributed as dist

            if batch_size % world:
                raise ConfigError(
                    f"train.batch_size ({batch_size}) is the global batch: it must be a multiple of the {world} "
                    f"processes"
                )
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

        sampler = DistributedSampler(
            range(num_pairs), num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed
        )
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
