"""The two-tower retrieval model and its checkpoint format.

Query tower: a small BERT over the query text. Item tower: a small BERT over the title
(with category and brand) and a timm CNN over the image, fused into one vector. Both
sides are L2-normalised; the score is their dot product.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from smar.config import ModelConfig

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE = "weights.pt", "model_config.json", "tokenizer.json"


def item_text(title: str, category: str | None, brand: str | None) -> str:
    """What the item text tower reads: the title plus the catalog's structured fields."""
    return " | ".join(part for part in (title, category, brand) if isinstance(part, str) and part)


def train_tokenizer(texts, config: ModelConfig):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=config.vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return _with_padding(tokenizer, config)


def _with_padding(tokenizer, config: ModelConfig):
    tokenizer.enable_truncation(max_length=config.max_text_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    return tokenizer


def tokenize(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
        "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
    }


def images_to_tensor(paths, size: int) -> torch.Tensor:
    """Decode and resize images once, as uint8 [N, 3, size, size]; normalised on the fly later."""
    import numpy as np
    from PIL import Image

    array = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for row, path in enumerate(paths):
        with Image.open(path) as image:
            array[row] = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


class TextEncoder(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int):
        super().__init__()
        from transformers import BertConfig, BertModel

        bert_config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=config.text_hidden_size,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            intermediate_size=4 * config.text_hidden_size,
            max_position_embeddings=config.max_text_length,
        )
        self.bert = BertModel(bert_config, add_pooling_layer=False)
        self.projection = nn.Linear(config.text_hidden_size, config.embedding_dim)
        self.pooling = config.text_pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return self.projection(hidden[:, 0])
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.projection((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))


class ImageEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        import timm

        self.backbone = timm.create_model(config.image_backbone, pretrained=False, num_classes=0)
        self.projection = nn.Linear(self.backbone.num_features, config.embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.float().div(127.5).sub(1.0)  # uint8 -> [-1, 1]
        return self.projection(self.backbone(pixels))


class TwoTowerModel(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, initial_temperature: float = 0.07):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.query_encoder = TextEncoder(config, vocab_size)
        self.title_encoder = self.query_encoder if config.share_text_encoder else TextEncoder(config, vocab_size)
        self.image_encoder = ImageEncoder(config)
        self.fusion = nn.Sequential(
            nn.Linear(2 * config.embedding_dim, 2 * config.embedding_dim),
            nn.GELU(),
            nn.Linear(2 * config.embedding_dim, config.embedding_dim),
        )
        self.logit_scale = nn.Parameter(torch.tensor(1.0 / initial_temperature).log())

    def encode_queries(self, input_ids, attention_mask) -> torch.Tensor:
        return F.normalize(self.query_encoder(input_ids, attention_mask).float(), dim=-1)

    def encode_items(self, input_ids, attention_mask, images) -> torch.Tensor:
        text = F.normalize(self.title_encoder(input_ids, attention_mask), dim=-1)
        image = F.normalize(self.image_encoder(images), dim=-1)
        return F.normalize(self.fusion(torch.cat([text, image], dim=-1)).float(), dim=-1)

    def temperature(self) -> float:
        return float(1.0 / self.logit_scale.detach().exp())


def in_batch_softmax_loss(query_vectors, item_vectors, logit_scale, also_relevant=None) -> torch.Tensor:
    """InfoNCE over the batch: row i's positive is column i, every other column a negative.

    `also_relevant[i, j]` marks columns j != i that are relevant to query i too (the same
    item twice in a batch, or another known positive); they are masked out, not negatives.
    """
    scale = logit_scale.clamp(max=torch.tensor(100.0).log()).exp()
    logits = scale * query_vectors @ item_vectors.T
    if also_relevant is not None:
        logits = logits.masked_fill(also_relevant, float("-inf"))
    targets = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, targets)


def save_model(model: TwoTowerModel, tokenizer, directory: Path) -> None:
    directory = Path(directory)
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    tokenizer.save(str(directory / TOKENIZER_FILE))
    meta = {"model": model.config.model_dump(mode="json"), "vocab_size": model.vocab_size}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_model(directory: str | Path, device: str = "cpu"):
    """Load (model, tokenizer) from a checkpoint directory written by `save_model`."""
    from tokenizers import Tokenizer

    directory = Path(directory)
    meta = json.loads((directory / CONFIG_FILE).read_text())
    config = ModelConfig.model_validate(meta["model"])
    model = TwoTowerModel(config, meta["vocab_size"])
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location=device, weights_only=True))
    tokenizer = _with_padding(Tokenizer.from_file(str(directory / TOKENIZER_FILE)), config)
    return model.to(device).eval(), tokenizer


def resolve_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible; set train.device to 'auto' or 'cpu'.")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def autocast(device: str):
    """bf16 autocast on CUDA; full precision on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))


@torch.inference_mode()
def encode_texts(model: TwoTowerModel, tokenizer, texts: list[str], batch_size: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device.type
    vectors = []
    for start in range(0, len(texts), batch_size):
        tokens = {k: v.to(device) for k, v in tokenize(tokenizer, texts[start : start + batch_size]).items()}
        with autocast(device):
            vectors.append(model.encode_queries(**tokens).float().cpu())
    return torch.cat(vectors) if vectors else torch.empty(0, model.config.embedding_dim)


@torch.inference_mode()
def encode_item_batch(model: TwoTowerModel, tokenizer, texts: list[str], images: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device.type
    tokens = {k: v.to(device) for k, v in tokenize(tokenizer, texts).items()}
    with autocast(device):
        return model.encode_items(**tokens, images=images.to(device)).float().cpu()
