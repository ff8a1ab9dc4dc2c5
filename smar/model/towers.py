"""The towers: text encoder (a BERT), image encoder (a timm backbone + small Transformer) and the fusions.

Every block added on top of a pretrained encoder starts as the identity (a residual branch
ending in a zero-initialised layer), so the untrained model is the pretrained encoder.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn
from torch.nn import functional as F

from smar.core.config import ModelConfig
from smar.model.tokenizer import train_tokenizer


def zero_shot_encoder(max_text_length: int):
    """(MiniLM as shipped, its tokenizer): the off-the-shelf text search every evaluation is compared with."""
    config = ModelConfig(max_text_length=max_text_length)
    return TextEncoder(config, vocab_size=0, pretrained=True).eval(), train_tokenizer([], config)


def _transformer_layer(config: ModelConfig, decoder: bool = False) -> nn.Module:
    layer = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    width = config.fusion_width
    heads = max(1, width // 32)
    return layer(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)


class ResidualOutput(nn.Linear):
    """The last layer of a branch added on top of a pretrained encoder. It starts at zero, so the
    branch adds nothing until trained; scaling every one of them by a factor walks from the
    untrained model (0: zero-shot MiniLM) to the trained one (1), as smar.training.blend does."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__(inputs, outputs)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)


class ResidualAdapter(nn.Module):
    """x + MLP(x), the MLP's last layer starting at zero: the identity until it learns otherwise."""

    def __init__(self, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), ResidualOutput(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x)


class TextEncoder(nn.Module):
    """A BERT: token states [B, L, H], pooled into a vector [B, D].

    With MiniLM the vector is MiniLM's sentence embedding (the masked mean of its last states)
    through a residual adapter that starts as the identity, so the untrained tower IS
    off-the-shelf MiniLM. With `pretrained: frozen` the BERT never trains (nor drops out): its
    states are a fixed function of the text, which training reads from the featurize step's
    output (`states=`, or `pooled=` for queries).
    """

    def __init__(self, config: ModelConfig, vocab_size: int, pretrained: bool = False):
        super().__init__()
        from transformers import BertConfig, BertModel

        if config.text_encoder == "minilm":
            from smar.model.pretrained import minilm_bert, minilm_dir

            # The weights come from the package when training starts, from the checkpoint after.
            self.bert = (
                minilm_bert()
                if pretrained
                else BertModel(BertConfig.from_pretrained(str(minilm_dir())), add_pooling_layer=False)
            )
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

    def forward(
        self, attention_mask: torch.Tensor | None = None, input_ids=None, states=None, pooled=None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(token states, vector) from token ids, a frozen encoder's `states`, or its `pooled`
        vector alone (all a query tower reads of it; then there are no token states)."""
        if pooled is not None:
            return None, self.head(pooled.float())
        tokens = self.states(input_ids, attention_mask) if states is None else states.float()
        pooled = tokens[:, 0] if self.pooling == "cls" else masked_mean(tokens, attention_mask)
        return tokens, self.head(pooled)


class ImageEncoder(nn.Module):
    """Backbone feature map -> patch tokens -> projection -> small Transformer with a CLS token.

    Input: uint8 pixels [B, 3, H, W], which go through the backbone, or float features
    [B, T, C] that take its place: a dataset's precomputed features, or the frozen backbone's
    own output read from the cache. The ImageNet backbone is read at `image_stage` (the third
    by default): its deeper stages, and its 1x1 head, discard colour, which shoppers ask for.
    """

    def __init__(self, config: ModelConfig, feature_shape: tuple[int, int] | None = None, pretrained: bool = False):
        super().__init__()
        self.backbone = None
        self.imagenet = config.image_weights == "imagenet"
        self.stage = config.image_stage
        self.frozen = False
        if feature_shape:
            grid, channels = feature_shape
        else:
            import timm

            if self.imagenet and pretrained:
                from smar.model.pretrained import efficientnet_lite0

                self.backbone = efficientnet_lite0(num_classes=0)
            else:
                self.backbone = timm.create_model(
                    config.image_backbone, pretrained=False, num_classes=0, global_pool=""
                )
            self.frozen = config.frozen_image
            self.backbone.requires_grad_(not self.frozen)
            with torch.no_grad():
                patches = self.patches(torch.zeros(2, 3, config.image_size, config.image_size, dtype=torch.uint8))
            grid, channels = patches.shape[1], patches.shape[2]
        width = config.fusion_width
        self.patch_projection = nn.Linear(channels, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(torch.randn(1, 1 + grid, width) * 0.02)
        self.transformer = nn.TransformerEncoder(
            _transformer_layer(config), config.image_layers, enable_nested_tensor=False
        )
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
                features = self.backbone.forward_intermediates(
                    pixels, indices=[self.stage - 1], intermediates_only=True, stop_early=True
                )[-1]
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
    gather, and the image's own vector, are added to the text vector through layers that start
    at zero, so the untrained fusion gives the item's text vector and learns what the image adds
    to it: through the title's reading of it, and as a whole (what no word of the title asks for)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.title_projection = nn.Linear(config.text_hidden_size, config.fusion_width)
        self.layers = nn.TransformerDecoder(_transformer_layer(config, decoder=True), config.fusion_layers)
        self.added = ResidualOutput(config.fusion_width, config.embedding_dim)
        self.image_added = ResidualOutput(config.embedding_dim, config.embedding_dim)

    def forward(self, text_tokens, text_mask, text_vector, image_tokens, image_vector) -> torch.Tensor:
        title = self.title_projection(text_tokens)
        fused = self.layers(tgt=title, memory=image_tokens, tgt_key_padding_mask=~text_mask.bool())
        return text_vector + self.added(masked_mean(fused, text_mask)) + self.image_added(image_vector)


class MlpFusion(nn.Module):
    """Fusion without cross-attention: an MLP over the two pooled vectors, added to the text vector."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        width = 2 * config.embedding_dim
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), ResidualOutput(width, config.embedding_dim))

    def forward(self, text_tokens, text_mask, text_vector, image_tokens, image_vector) -> torch.Tensor:
        return text_vector + self.mlp(
            torch.cat([F.normalize(text_vector, dim=-1), F.normalize(image_vector, dim=-1)], dim=-1)
        )


class SumFusion(nn.Module):
    """Late fusion: the sum of the normalised text and image vectors."""

    def forward(self, text_tokens, text_mask, text_vector, image_tokens, image_vector) -> torch.Tensor:
        return F.normalize(text_vector, dim=-1) + F.normalize(image_vector, dim=-1)


FUSIONS = {"cross_attention": CrossAttentionFusion, "mlp": MlpFusion, "sum": lambda config: SumFusion()}
