"""Text to token ids: the tokenizer a model is trained with, saved with its checkpoint."""

from __future__ import annotations

import torch

from smar.core.config import ModelConfig

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts, config: ModelConfig):
    """A WordPiece tokenizer built from the catalog and queries; MiniLM's own with `text_encoder: minilm`.

    The vocabulary is built here rather than by `tokenizers`' trainer, whose ids vary from run
    to run (it breaks frequency ties in hash order): same texts, same ids, same model. It holds
    every character seen (most frequent first, each also as a `##` continuation), so a typo
    still splits into known pieces, then the most frequent whole words up to `vocab_size`.
    """
    if config.text_encoder == "minilm":
        from smar.model.pretrained import minilm_tokenizer

        return with_padding(minilm_tokenizer(), config)
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
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return with_padding(tokenizer, config)


def with_padding(tokenizer, config: ModelConfig):
    tokenizer.enable_truncation(max_length=config.max_text_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    return tokenizer


def tokenize(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
        "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
    }
