"""The SMAR model, its baselines and ablations, and the checkpoint format.

Query tower Q: a small BERT over the query. Item towers: S_t, the text encoder over title,
category and brand; S_i, a timm backbone whose feature map becomes patch tokens for a small
Transformer with a CLS token; S_m, title tokens fused with image tokens by cross-attention.
Every output is L2-normalised; the score is the dot product. `KINDS` says, per model kind,
how the item is fused and which views are trained and served.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
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
    """A WordPiece tokenizer built from the catalog and queries; MiniLM's own with `text_encoder: minilm`.

    The vocabulary is built here rather than by `tokenizers`' trainer, whose ids vary from run
    to run (it breaks frequency ties in hash order): same texts, same ids, same model. It holds
    every character seen (most frequent first, each also as a `##` continuation), so a typo
    still splits into known pieces, then the most frequent whole words up to `vocab_size`.
    """
    if config.text_encoder == "minilm":
        from smar.pretrained import minilm_tokenizer

        return _with_padding(minilm_tokenizer(), config)
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(word for text in texts for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = Counter()
    for word, count in words.items():
        for character in word:
            characters[character] += count
    by_frequency = lambda counts: [token for token, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]  # noqa: E731
    pieces = list(SPECIAL_TOKENS)
    for character in by_frequency(characters):
        if len(pieces) + 2 > config.vocab_size:
            break
        pieces += [character, f"##{character}"]
    pieces += [word for word in by_frequency(words) if len(word) > 1][: max(0, config.vocab_size - len(pieces))]
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(pieces)}, unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer, tokenizer.decoder = normalizer, splitter, decoders.WordPiece()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return _with_padding(tokenizer, config)


def _with_padding(tokenizer, config: ModelConfig):
    tokenizer.enable_truncation(max_length=config.max_text_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    return tokenizer


def zero_shot_encoder(max_text_length: int):
    """(MiniLM as shipped, its tokenizer): the off-the-shelf text search every evaluation is compared with."""
    config = ModelConfig(max_text_length=max_text_length)
    return TextEncoder(config, vocab_size=0, pretrained=True).eval(), train_tokenizer([], config)


def tokenize(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
        "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
    }


def image_feature_shape(data_dir: str | Path) -> tuple[int, int] | None:
    """(tokens, dim) of the dataset's precomputed image features, or None when it ships image files."""
    import numpy as np

    from smar.dataset import IMAGE_FEATURES

    path = Path(data_dir) / IMAGE_FEATURES
    if not path.is_file():
        return None
    shape = np.load(path, mmap_mode="r").shape
    return (1, shape[1]) if len(shape) == 2 else (shape[1], shape[2])


@dataclass(frozen=True)
class KindSpec:
    """How a model kind fuses the item's modalities and which item views it trains and serves."""

    fusion: str | None  # "cross_attention", "mlp", "sum", or None for a single modality
    losses: tuple[str, ...]  # item views aligned to the query, each by its own InfoNCE loss
    serve: str  # the item view that is indexed ("multimodal", "text" or "image")


KINDS = {
    "smar": KindSpec("cross_attention", ("text", "image", "multimodal"), "multimodal"),
    "smar_fused_only": KindSpec("cross_attention", ("multimodal",), "multimodal"),
    "smar_no_xattn": KindSpec("mlp", ("text", "image", "multimodal"), "multimodal"),
    "late_fusion": KindSpec("sum", ("multimodal",), "multimodal"),
    "text_only": KindSpec(None, ("text",), "text"),
    "image_only": KindSpec(None, ("image",), "image"),
}


def served_views(config: ModelConfig) -> tuple[str, ...]:
    """The item views that get an index. Two views: the routing head picks one per query."""
    spec = KINDS[config.kind]
    if config.kind == "smar" and config.adaptive_routing:
        return ("multimodal", "text")
    return (spec.serve,)


def uses_images(config: ModelConfig) -> bool:
    """Whether the model kind has an image tower (else the item side reads text alone)."""
    spec = KINDS[config.kind]
    return spec.fusion is not None or "image" in spec.losses + served_views(config)


def _transformer_layer(config: ModelConfig, decoder: bool = False) -> nn.Module:
    layer = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    width = config.fusion_width
    heads = max(1, width // 32)
    return layer(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)


def _zero_linear(inputs: int, outputs: int) -> nn.Linear:
    """A linear layer that starts at zero: the residual branch it ends adds nothing until trained."""
    layer = nn.Linear(inputs, outputs)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)


class ResidualAdapter(nn.Module):
    """x + MLP(x), the MLP's last layer starting at zero: the identity until it learns otherwise."""

    def __init__(self, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), _zero_linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x)


class TextEncoder(nn.Module):
    """A BERT: token states [B, L, H], pooled into a vector [B, D].

    With MiniLM the vector is MiniLM's sentence embedding (the masked mean of its last states)
    through a residual adapter that starts as the identity, so the untrained tower IS
    off-the-shelf MiniLM. With `pretrained: frozen` the BERT never trains (nor drops out): its
    states are a fixed function of the text, which training reads from a cache (`states=`).
    """

    def __init__(self, config: ModelConfig, vocab_size: int, pretrained: bool = False):
        super().__init__()
        from transformers import BertConfig, BertModel

        if config.text_encoder == "minilm":
            from smar.pretrained import minilm_bert, minilm_dir

            # The weights come from the package when training starts, from the checkpoint after.
            self.bert = minilm_bert() if pretrained else BertModel(BertConfig.from_pretrained(str(minilm_dir())), add_pooling_layer=False)
            self.head = ResidualAdapter(config.text_hidden_size)
        else:
            bert_config = BertConfig(
                vocab_size=vocab_size,
                hidden_size=config.text_hidden_size,
                num_hidden_layers=config.text_layers,
                num_attention_heads=config.text_heads,
                intermediate_size=4 * config.text_hidden_size,
                max_position_embeddings=config.max_text_length,
                hidden_dropout_prob=config.text_dropout,
                attention_probs_dropout_prob=config.text_dropout,
            )
            self.bert = BertModel(bert_config, add_pooling_layer=False)
            self.head = nn.Linear(config.text_hidden_size, config.embedding_dim)
        self.frozen = config.frozen_text
        self.bert.requires_grad_(not self.frozen)
        self.pooling = config.text_pooling

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.frozen:
            self.bert.eval()  # its cached states were computed without dropout
        return self

    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The BERT's last hidden states [B, L, H] (what the frozen-encoder cache holds)."""
        with torch.no_grad() if self.frozen else nullcontext():
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, attention_mask: torch.Tensor, input_ids=None, states=None) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.states(input_ids, attention_mask) if states is None else states.float()
        pooled = tokens[:, 0] if self.pooling == "cls" else masked_mean(tokens, attention_mask)
        return tokens, self.head(pooled)


class ImageEncoder(nn.Module):
    """Backbone feature map -> patch tokens -> projection -> small Transformer with a CLS token.

    Input: uint8 pixels [B, 3, H, W], which go through the backbone, or float features
    [B, T, C] that take its place: a dataset's precomputed features, or the frozen backbone's
    own output read from the cache. The ImageNet backbone is read at its last stage, before
    its 1x1 head: ImageNet's head discards colour, which shoppers ask for.
    """

    def __init__(self, config: ModelConfig, feature_shape: tuple[int, int] | None = None, pretrained: bool = False):
        super().__init__()
        self.backbone = None
        self.imagenet = config.image_weights == "imagenet"
        self.frozen = False
        if feature_shape:
            grid, channels = feature_shape
        else:
            import timm

            if self.imagenet and pretrained:
                from smar.pretrained import efficientnet_lite0

                self.backbone = efficientnet_lite0(num_classes=0)
            else:
                self.backbone = timm.create_model(config.image_backbone, pretrained=False, num_classes=0, global_pool="")
            self.frozen = config.frozen_image
            self.backbone.requires_grad_(not self.frozen)
            with torch.no_grad():
                patches = self.patches(torch.zeros(2, 3, config.image_size, config.image_size, dtype=torch.uint8))
            grid, channels = patches.shape[1], patches.shape[2]
        width = config.fusion_width
        self.patch_projection = nn.Linear(channels, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(torch.randn(1, 1 + grid, width) * 0.02)
        self.transformer = nn.TransformerEncoder(_transformer_layer(config), config.image_layers, enable_nested_tensor=False)
        self.projection = nn.Linear(width, config.embedding_dim)

    def train(self, mode: bool = True) -> ImageEncoder:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # BatchNorm keeps the statistics the cached features were computed with
        return self

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 pixels [B, 3, H, W] -> the backbone's patch tokens [B, T, C]."""
        # uint8 -> about [-1, 1]; the ImageNet weights were trained on (x - 127) / 128
        pixels = images.float().sub(127.0).div(128.0) if self.imagenet else images.float().div(127.5).sub(1.0)
        if images.is_contiguous(memory_format=torch.channels_last):
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.no_grad() if self.frozen else nullcontext():
            if self.imagenet:
                features = self.backbone.forward_intermediates(pixels, indices=1, intermediates_only=True, stop_early=True)[-1]
            else:
                features = self.backbone.forward_features(pixels)
        return features.flatten(2).transpose(1, 2) if features.ndim == 4 else features  # CNN map or ViT tokens

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.patches(images) if images.dtype == torch.uint8 else images.float()
        if features.ndim == 2:
            features = features.unsqueeze(1)  # one feature vector per image: one token
        patches = self.patch_projection(features.float())
        tokens = torch.cat([self.cls.expand(len(patches), -1, -1), patches], dim=1) + self.position
        tokens = self.transformer(tokens)
        return tokens, self.projection(tokens[:, 0])


class CrossAttentionFusion(nn.Module):
    """Title tokens attend to image tokens (self-attention, cross-attention, MLP); what they
    gather is added to the text vector through a layer that starts at zero, so the untrained
    fusion gives the item's text vector and learns what the image adds to it."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.title_projection = nn.Linear(config.text_hidden_size, config.fusion_width)
        self.layers = nn.TransformerDecoder(_transformer_layer(config, decoder=True), config.fusion_layers)
        self.added = _zero_linear(config.fusion_width, config.embedding_dim)

    def forward(self, text_tokens, text_mask, text_vector, image_tokens, image_vector) -> torch.Tensor:
        title = self.title_projection(text_tokens)
        fused = self.layers(tgt=title, memory=image_tokens, tgt_key_padding_mask=~text_mask.bool())
        return text_vector + self.added(masked_mean(fused, text_mask))


class MlpFusion(nn.Module):
    """Fusion without cross-attention: an MLP over the two pooled vectors, added to the text vector."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        width = 2 * config.embedding_dim
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), _zero_linear(width, config.embedding_dim))

    def forward(self, text_tokens, text_mask, text_vector, image_tokens, image_vector) -> torch.Tensor:
        return text_vector + self.mlp(torch.cat([F.normalize(text_vector, dim=-1), F.normalize(image_vector, dim=-1)], dim=-1))


class SumFusion(nn.Module):
    """Late fusion: the sum of the normalised text and image vectors."""

    def forward(self, text_tokens, text_mask, text_vector, image_tokens, image_vector) -> torch.Tensor:
        return F.normalize(text_vector, dim=-1) + F.normalize(image_vector, dim=-1)


FUSIONS = {"cross_attention": CrossAttentionFusion, "mlp": MlpFusion, "sum": lambda config: SumFusion()}


class RetrievalModel(nn.Module):
    """Query tower Q and item towers S_t (text), S_i (image), S_m (fused), per `config.kind`."""

    def __init__(self, config: ModelConfig, vocab_size: int, initial_temperature: float = 0.07, image_feature_shape=None, pretrained=False):
        super().__init__()
        self.config, self.vocab_size, self.image_feature_shape = config, vocab_size, image_feature_shape
        self.spec = KINDS[config.kind]
        self.views = tuple(dict.fromkeys(self.spec.losses + served_views(config)))
        self.query_encoder = TextEncoder(config, vocab_size, pretrained)
        uses_text = self.spec.fusion is not None or "text" in self.views
        self.title_encoder = None
        if uses_text:
            self.title_encoder = self.query_encoder if config.share_text_encoder else TextEncoder(config, vocab_size, pretrained)
        self.image_encoder = ImageEncoder(config, image_feature_shape, pretrained) if uses_images(config) else None
        self.fusion = FUSIONS[self.spec.fusion](config) if self.spec.fusion else None
        start = torch.tensor(1.0 / initial_temperature).log()
        self.logit_scales = nn.ParameterDict({view: nn.Parameter(start.clone()) for view in self.spec.losses})
        self.router = None
        if len(served_views(config)) > 1:
            width = config.embedding_dim
            self.router = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))
            nn.init.zeros_(self.router[-1].weight)  # until stage 2 trains it, P sends every query to multimodal
            nn.init.constant_(self.router[-1].bias, 1.0)

    def forward(self, query_tokens: dict, item_inputs: dict, views) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training step's vectors: queries, and items for each view (distributed training calls this)."""
        return self.encode_queries(**query_tokens), self.encode_items(**item_inputs, views=views)

    def encode_queries(self, attention_mask, input_ids=None, states=None) -> torch.Tensor:
        """L2-normalised query vectors from token ids, or from the frozen encoder's cached `states`."""
        return F.normalize(self.query_encoder(attention_mask, input_ids, states)[1].float(), dim=-1)

    def encode_items(self, attention_mask, images, input_ids=None, states=None, views=None) -> dict[str, torch.Tensor]:
        """L2-normalised item vectors for each requested view (default: every view the kind uses).
        Text comes as token ids or as the frozen encoder's `states`; images as pixels or features."""
        views = views or self.views
        text_tokens = text_vector = image_tokens = image_vector = None
        if self.title_encoder is not None and ("text" in views or "multimodal" in views):
            text_tokens, text_vector = self.title_encoder(attention_mask, input_ids, states)
        if self.image_encoder is not None and ("image" in views or "multimodal" in views):
            image_tokens, image_vector = self.image_encoder(images)
        vectors = {"text": text_vector, "image": image_vector}
        if "multimodal" in views:
            vectors["multimodal"] = self.fusion(text_tokens, attention_mask, text_vector, image_tokens, image_vector)
        return {view: F.normalize(vectors[view].float(), dim=-1) for view in views}

    @property
    def item_text_encoder(self) -> TextEncoder:
        """The encoder of item texts (the query encoder for a kind that reads no item text)."""
        return self.title_encoder if self.title_encoder is not None else self.query_encoder

    @torch.inference_mode()
    def route_to_multimodal(self, query_vectors: torch.Tensor) -> torch.Tensor:
        """Stage 2: True where the multimodal index should serve the query, False for the text index."""
        if self.router is None:
            return torch.ones(len(query_vectors), dtype=torch.bool, device=query_vectors.device)
        return self.router(query_vectors.float()).squeeze(-1) >= 0

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters that start from shipped weights (and so fine-tune at a lower rate)."""
        modules = []
        if self.config.text_encoder == "minilm":
            modules += [encoder.bert for encoder in {self.query_encoder, self.title_encoder} if encoder is not None]
        if self.config.image_weights == "imagenet" and self.image_encoder is not None and self.image_encoder.backbone is not None:
            modules.append(self.image_encoder.backbone)
        return [p for module in modules for p in module.parameters()]

    def temperatures(self) -> dict[str, float]:
        return {view: float(1.0 / scale.detach().exp()) for view, scale in self.logit_scales.items()}


def in_batch_softmax_loss(query_vectors, item_vectors, logit_scale, item_ids, query_ids=None, known_pairs=None, num_items=0):
    """InfoNCE over in-batch negatives: row i's positive is item i, every other item a negative.

    Columns that are not negatives are masked out: the same item id as the positive (a
    duplicate in the batch) and, given `known_pairs` (sorted query_id * num_items + item_id
    keys), any other known positive of the query. Under torch.distributed the items of every
    rank are gathered (with gradients) as extra negatives; one process gives the same result
    as before.
    """
    all_items, all_item_ids, offset = _gather_items(item_vectors, item_ids)
    scale = logit_scale.clamp(max=torch.tensor(100.0).log()).exp()
    logits = scale * query_vectors.float() @ all_items.float().T
    targets = offset + torch.arange(len(logits), device=logits.device)
    not_negative = item_ids[:, None] == all_item_ids[None, :]
    if known_pairs is not None:
        not_negative |= torch.isin(query_ids[:, None] * num_items + all_item_ids[None, :], known_pairs)
    not_negative[torch.arange(len(logits)), targets] = False
    return F.cross_entropy(logits.masked_fill(not_negative, float("-inf")), targets)


def multitask_loss(model: RetrievalModel, query_vectors, item_vectors: dict, item_ids, query_ids, known_pairs, num_items, weights: dict):
    """Stage 1: the weighted sum of one InfoNCE loss per trained item view (alpha L_t + beta L_i + gamma L_m)."""
    parts = {
        view: in_batch_softmax_loss(query_vectors, item_vectors[view], model.logit_scales[view], item_ids, query_ids, known_pairs, num_items)
        for view in model.spec.losses
    }
    return sum(weights[view] * part for view, part in parts.items()), parts


def _gather_items(item_vectors: torch.Tensor, item_ids: torch.Tensor):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return item_vectors, item_ids, 0
    from torch.distributed.nn.functional import all_gather

    ids = [torch.empty_like(item_ids) for _ in range(dist.get_world_size())]
    dist.all_gather(ids, item_ids)
    return torch.cat(all_gather(item_vectors)), torch.cat(ids), dist.get_rank() * len(item_vectors)


def save_model(model: RetrievalModel, tokenizer, directory: Path) -> None:
    directory = Path(directory)
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    tokenizer.save(str(directory / TOKENIZER_FILE))
    meta = {"model": model.config.model_dump(mode="json"), "vocab_size": model.vocab_size, "image_feature_shape": model.image_feature_shape}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_model(directory: str | Path, device: str = "cpu"):
    """Load (model, tokenizer) from a checkpoint directory written by `save_model`."""
    from tokenizers import Tokenizer

    directory = Path(directory)
    meta = json.loads((directory / CONFIG_FILE).read_text())
    config = ModelConfig.model_validate(meta["model"])
    model = RetrievalModel(config, meta["vocab_size"], image_feature_shape=meta.get("image_feature_shape"))
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location=device, weights_only=True))
    tokenizer = _with_padding(Tokenizer.from_file(str(directory / TOKENIZER_FILE)), config)
    return model.to(device).eval(), tokenizer


def resolve_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible; set train.device to 'auto' or 'cpu'.")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def autocast(device: str, dtype: torch.dtype = torch.bfloat16):
    """Mixed precision on CUDA (bf16 for training, fp16 for export); full precision on CPU."""
    return torch.autocast("cuda", dtype=dtype, enabled=device.startswith("cuda"))


@torch.inference_mode()
def encode_texts(model: RetrievalModel, tokenizer, texts: list[str], batch_size: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device.type
    vectors = []
    for start in range(0, len(texts), batch_size):
        tokens = {k: v.to(device) for k, v in tokenize(tokenizer, texts[start : start + batch_size]).items()}
        with autocast(device):
            vectors.append(model.encode_queries(**tokens).float().cpu())
    return torch.cat(vectors) if vectors else torch.empty(0, model.config.embedding_dim)


@torch.inference_mode()
def encode_item_batch(model: RetrievalModel, tokens: dict, images: torch.Tensor | None, views=None) -> dict[str, torch.Tensor]:
    """Item vectors (float32, on the CPU) for one batch of tokenised texts and images (None for
    a model without an image tower); fp16 on CUDA."""
    device = next(model.parameters()).device.type
    inputs = {k: v.to(device, non_blocking=True) for k, v in tokens.items()}
    inputs["images"] = images.to(device, non_blocking=True) if images is not None else None
    with autocast(device, torch.float16):
        vectors = model.encode_items(**inputs, views=views)
    return {view: vector.float().cpu() for view, vector in vectors.items()}
