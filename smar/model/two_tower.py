"""The SMAR two-tower model: query tower Q; item towers S_t (text), S_i (image), S_m (fused).

Query tower Q: a BERT over the query (MiniLM by default). Item towers: S_t, the text encoder
over title, category and brand; S_i, a timm backbone whose feature map becomes patch tokens
for a small Transformer with a CLS token; S_m, title tokens fused with image tokens by
cross-attention. Every output is L2-normalised; the score is the dot product. `KINDS`
(smar.model.kinds) says, per model kind, how the item is fused and which views are trained
and served.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from smar.core.config import ModelConfig
from smar.model.kinds import KINDS, served_views, uses_images
from smar.model.towers import FUSIONS, ImageEncoder, TextEncoder


class RetrievalModel(nn.Module):
    """Query tower Q and item towers S_t (text), S_i (image), S_m (fused), per `config.kind`."""

    def __init__(
        self,
        config: ModelConfig,
        vocab_size: int,
        initial_temperature: float = 0.07,
        image_feature_shape=None,
        pretrained=False,
    ):
        super().__init__()
        self.config, self.vocab_size, self.image_feature_shape = config, vocab_size, image_feature_shape
        self.spec = KINDS[config.kind]
        self.views = tuple(dict.fromkeys(self.spec.losses + served_views(config)))
        self.query_encoder = TextEncoder(config, vocab_size, pretrained)
        uses_text = self.spec.fusion is not None or "text" in self.views
        self.title_encoder = None
        if uses_text:
            self.title_encoder = (
                self.query_encoder if config.share_text_encoder else TextEncoder(config, vocab_size, pretrained)
            )
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

    def encode_queries(self, attention_mask=None, input_ids=None, states=None, pooled=None) -> torch.Tensor:
        """L2-normalised query vectors from token ids, or from the frozen encoder's `states` or `pooled` vectors."""
        return F.normalize(self.query_encoder(attention_mask, input_ids, states, pooled)[1].float(), dim=-1)

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
        if (
            self.config.image_weights == "imagenet"
            and self.image_encoder is not None
            and self.image_encoder.backbone is not None
        ):
            modules.append(self.image_encoder.backbone)
        return [p for module in modules for p in module.parameters()]

    def shipped_state_keys(self) -> set[str]:
        """State keys of the frozen pretrained encoders (MiniLM, the ImageNet backbone): the
        packages' weights, which training never changes, so a saved model need not carry them."""
        frozen = [encoder.bert for encoder in (self.query_encoder, self.title_encoder) if encoder and encoder.frozen]
        if self.image_encoder is not None and self.image_encoder.frozen and self.image_encoder.backbone is not None:
            frozen.append(self.image_encoder.backbone)
        ids = {id(module) for module in frozen}
        return {
            f"{name}.{key}"
            for name, module in self.named_modules(remove_duplicate=False)
            if id(module) in ids
            for key in module.state_dict()
        }

    def temperatures(self) -> dict[str, float]:
        return {view: float(1.0 / scale.detach().exp()) for view, scale in self.logit_scales.items()}
