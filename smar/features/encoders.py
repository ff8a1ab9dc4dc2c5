"""The frozen encoders (MiniLM, the EfficientNet-Lite0 backbone) at the machine's speed.

On a CPU they run through ONNX Runtime, exported in memory once per process and checked
against PyTorch on a sample (PyTorch runs them when either fails, and for a shard of under
`ONNX_FROM_ROWS` rows, which would not repay the export): 1.5x sentence-transformers for
MiniLM and 5.5x timm for the backbone at 224 px (benchmarks/results/featurize-encoders.md).
On CUDA they run in PyTorch, fp16. Texts go in batches of similar length, padded to the
longest in the batch; images are decoded at about the model's size by a pool of threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
from functools import cache, cached_property

import numpy as np
import torch

from smar.core.config import ModelConfig

log = logging.getLogger(__name__)

ONNX_TOLERANCE = 1e-3  # largest difference from PyTorch allowed in any output value
ONNX_FROM_ROWS = 1000  # a shard this large pays for its process's ONNX session (about 2 s an encoder); PyTorch below


def text_encoder_key(config: ModelConfig) -> str:
    """Changes with MiniLM's weights, its tokenizer or the text length."""
    return _text_encoder(config.max_text_length, "cpu").key


def image_encoder_key(config: ModelConfig) -> str:
    """Changes with the backbone's weights, the image size or the stage read."""
    return _image_encoder(config.image_size, config.image_stage, "cpu").key


def encode_texts(config: ModelConfig, texts: list[str], device: str, batch_size: int):
    """Yield (rows, float32 states [b, longest, H], lengths [b]) over `texts` in batches of similar length."""
    yield from _text_encoder(config.max_text_length, device).encode(texts, batch_size, len(texts) >= ONNX_FROM_ROWS)


def encode_images(config: ModelConfig, pixels: np.ndarray, device: str, shard_rows: int) -> np.ndarray:
    """uint8 [b, 3, S, S] -> float32 patch tokens [b, P, C], for a shard of `shard_rows` images."""
    return _image_encoder(config.image_size, config.image_stage, device).run(pixels, onnx=shard_rows >= ONNX_FROM_ROWS)


@cache
def _text_encoder(max_length: int, device: str) -> FrozenText:
    return FrozenText(max_length, device)


@cache
def _image_encoder(image_size: int, stage: int, device: str) -> FrozenImage:
    return FrozenImage(image_size, stage, device)


class _Runtime:
    """A frozen module's forward on `device`: ONNX Runtime on a CPU (for `onnx` calls; its session
    is built on the first), PyTorch (fp16 on CUDA) otherwise."""

    def __init__(self, module: torch.nn.Module, sample: tuple, names: list[str], axes: dict, device: str):
        self.module, self.device = module.eval().to(device), device
        self.sample, self.names, self.axes = sample, names, axes

    @cached_property
    def session(self):
        return _onnx_session(self.module, self.sample, self.names, self.axes) if self.device == "cpu" else None

    def __call__(self, *inputs: np.ndarray, onnx: bool = True) -> np.ndarray:
        if onnx and self.session is not None:
            return self.session.run(None, dict(zip(self.names, inputs)))[0]
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=self.device.startswith("cuda")):
            tensors = [torch.from_numpy(value).to(self.device, non_blocking=True) for value in inputs]
            return self.module(*tensors).float().cpu().numpy()


def _onnx_session(module, sample: tuple, names: list[str], axes: dict):
    """An ONNX Runtime session over `module`, or None (PyTorch then runs it) when it does not
    export or does not give PyTorch's outputs on `sample`."""
    try:
        import onnxruntime

        graph = io.BytesIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, sample, graph, input_names=names, output_names=["out"], dynamic_axes=axes, dynamo=False
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # a Dask worker's one thread, or the machine's
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            reference = module(*sample).numpy()
        difference = float(
            np.abs(session.run(None, dict(zip(names, (s.numpy() for s in sample))))[0] - reference).max()
        )
    except Exception as error:  # an operator the exporter or the runtime does not know
        log.warning(
            "%s not run by ONNX Runtime (%s: %s): PyTorch runs it", type(module).__name__, type(error).__name__, error
        )
        return None
    if difference > ONNX_TOLERANCE:
        log.warning("%s: ONNX Runtime differs from PyTorch by %.2g: PyTorch runs it", type(module).__name__, difference)
        return None
    return session


class _States(torch.nn.Module):
    """A text encoder's last hidden states (what the cross-attention fusion reads)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        return self.encoder.states(input_ids, attention_mask)


class _Patches(torch.nn.Module):
    """An image encoder's backbone patch tokens from uint8 pixels."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, pixels):
        return self.encoder.patches(pixels)


class FrozenText:
    """MiniLM as shipped; its runtime is built on first use (the key alone needs only the weights)."""

    def __init__(self, max_length: int, device: str):
        from smar.model.pretrained import minilm_tokenizer
        from smar.model.towers import TextEncoder

        self.encoder = TextEncoder(ModelConfig(max_text_length=max_length), vocab_size=0, pretrained=True).eval()
        self.tokenizer = minilm_tokenizer()
        self.tokenizer.enable_truncation(max_length=max_length)
        self.key = _key(self.encoder.bert, self.tokenizer.to_str(), max_length)
        self.device = device

    @cached_property
    def run(self) -> _Runtime:
        sample = (torch.tensor([[101, 2000, 102], [101, 102, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]]))
        axes = {name: {0: "batch", 1: "length"} for name in ("input_ids", "attention_mask", "out")}
        return _Runtime(_States(self.encoder), sample, ["input_ids", "attention_mask"], axes, self.device)

    def encode(self, texts: list[str], batch_size: int, onnx: bool = True):
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = np.array([len(encoding.ids) for encoding in encodings], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        for first in range(0, len(order), batch_size):
            rows = order[first : first + batch_size]
            longest = int(lengths[rows].max())
            ids = np.zeros((len(rows), longest), dtype=np.int64)
            mask = np.zeros((len(rows), longest), dtype=np.int64)
            for i, row in enumerate(rows):
                ids[i, : lengths[row]], mask[i, : lengths[row]] = encodings[row].ids, 1
            yield rows, self.run(ids, mask, onnx=onnx), lengths[rows]


class FrozenImage:
    """The EfficientNet-Lite0 backbone as shipped; its runtime is built on first use."""

    def __init__(self, image_size: int, stage: int, device: str):
        from smar.model.towers import ImageEncoder

        config = ModelConfig(image_size=image_size, image_stage=stage)
        self.encoder = ImageEncoder(config, pretrained=True).eval()
        self.key = _key(self.encoder.backbone, image_size, stage)
        self.image_size, self.device = image_size, device

    @cached_property
    def run(self) -> _Runtime:
        sample = (torch.randint(0, 256, (2, 3, self.image_size, self.image_size), dtype=torch.uint8),)
        axes = {"pixels": {0: "batch"}, "out": {0: "batch"}}
        return _Runtime(_Patches(self.encoder), sample, ["pixels"], axes, self.device)


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A hash of a module's class and every tensor in its state dict (names, shapes, bytes)."""
    digest = hashlib.sha256(type(module).__name__.encode())
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous().view(-1)
        digest.update(f"{name}\0{tuple(tensor.shape)}\0{tensor.dtype}\0".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _key(module: torch.nn.Module, *settings) -> str:
    text = "\0".join([weights_fingerprint(module), *map(str, settings)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
