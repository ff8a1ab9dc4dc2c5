"""The query tower as ONNX, run by ONNX Runtime: how evaluation, the gate and serving encode queries.

A query is encoded on every search, on the serving host's CPU, and the default query tower is
MiniLM (6 layers, hidden size 384). `save_query_onnx` exports the trained tower (token ids and
mask -> L2-normalised vector) beside the checkpoint and checks on sample queries that ONNX
Runtime gives PyTorch's vectors (to `TOLERANCE`); `load_query_onnx` runs it. A tower that does
not export, or does not match, is left to PyTorch with a warning: slower, never different.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch

from smar.core.paths import ModelFiles

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # largest difference allowed in any vector component


def save_query_onnx(model, tokenizer, directory: Path, sample_texts: list[str]) -> bool:
    """Export `model`'s query tower to `directory`'s query_onnx; False (and no file) when
    it cannot be exported or ONNX Runtime's vectors differ from PyTorch's on `sample_texts`."""
    import numpy as np

    from smar.model.inference import encode_texts
    from smar.model.tokenizer import tokenize

    path = ModelFiles(Path(directory)).query_onnx
    sample = tokenize(tokenizer, sample_texts[:2] or ["a query"])
    axes = {0: "batch", 1: "length"}
    checked = list(sample_texts) or ["a query"]
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            _quiet("torch.onnx"),
        ):
            warnings.simplefilter("ignore")  # its deprecation, and every branch on a shape it traced
            # TorchScript's exporter: the same graph, vectors and latency as torch.export's, in 1 s rather
            # than 6 (docs/model.md). A torch without it fails here, and queries are encoded by PyTorch.
            torch.onnx.export(
                QueryTower(model).eval(),
                (sample["input_ids"], sample["attention_mask"]),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["vectors"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "vectors": {0: "batch"}},
                dynamo=False,
            )
        encoder = OnnxQueryEncoder(path)
        # A padded batch and a batch of one: what the trace assumed of shapes must hold for both.
        onnx_vectors = np.concatenate([encoder.encode(tokenizer, checked), encoder.encode(tokenizer, checked[:1])])
    except Exception as error:  # an operator the exporter or the runtime does not know
        path.unlink(missing_ok=True)
        log.warning(
            "query tower not exported to ONNX (%s: %s); queries are encoded by PyTorch",
            type(error).__name__,
            str(error).splitlines()[0],
        )
        return False
    reference = np.concatenate([encode_texts(model, tokenizer, texts).numpy() for texts in (checked, checked[:1])])
    difference = float(np.abs(onnx_vectors - reference).max())
    if difference > TOLERANCE:
        path.unlink()
        log.warning("ONNX query tower differs from PyTorch's by %.2g; queries are encoded by PyTorch", difference)
        return False
    log.info("query tower exported to %s (largest difference from PyTorch %.1g)", path, difference)
    return True


def load_query_onnx(directory: Path) -> OnnxQueryEncoder | None:
    """The checkpoint's ONNX query tower, or None when it has none (or ONNX Runtime is missing)."""
    path = ModelFiles(Path(directory)).query_onnx
    if not path.is_file():
        return None
    try:
        return OnnxQueryEncoder(path)
    except ImportError:
        log.warning("%s: onnxruntime is not installed; queries are encoded by PyTorch", path)
        return None


class OnnxQueryEncoder:
    """An ONNX Runtime session over the exported query tower."""

    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle intra-op threads sleep rather than spin: a server holding two towers (an experiment's
        # champion and challenger) runs two sessions at once, and spinning ones steal the cores
        # the other is computing on (benchmarks/results/serving-experiment-10.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, tokenizer, texts: list[str], batch_size: int = 512):
        """float32 [N, D] L2-normalised query vectors."""
        import numpy as np

        from smar.model.tokenizer import tokenize

        chunks = []
        for start in range(0, len(texts), batch_size):
            tokens = tokenize(tokenizer, texts[start : start + batch_size])
            feed = {name: tokens[name].numpy() for name in ("input_ids", "attention_mask")}
            chunks.append(self.session.run(None, feed)[0])
        return np.concatenate(chunks) if chunks else np.empty((0, 0), dtype=np.float32)


class QueryTower(torch.nn.Module):
    """The query tower alone: (input_ids, attention_mask) -> L2-normalised vectors."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.encode_queries(attention_mask, input_ids=input_ids)


@contextlib.contextmanager
def _quiet(*names: str):
    """Only warnings and errors from these loggers while the block runs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
