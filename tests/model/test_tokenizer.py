"""The scratch tokenizer: built from the texts, the same ids every time, no unknown typos."""

from smar.config import ModelConfig
from smar.model.tokenizer import SPECIAL_TOKENS, train_tokenizer

TEXTS = ["Red striped ceramic mug", "Blue striped mug, large", "Oak lamp | Lumen", "red mug", "blue lamp shade"] * 3


def test_same_texts_give_the_same_ids_every_time():
    vocabularies = [train_tokenizer(TEXTS, ModelConfig(text_encoder="scratch")).get_vocab() for _ in range(5)]
    assert all(vocabulary == vocabularies[0] for vocabulary in vocabularies)
    assert [vocabularies[0][token] for token in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))


def test_known_words_are_one_token_and_typos_split_into_known_pieces():
    tokenizer = train_tokenizer(TEXTS, ModelConfig(text_encoder="scratch"))
    assert tokenizer.encode("RED mug").tokens == ["[CLS]", "red", "mug", "[SEP]"]
    typo = tokenizer.encode("stripped mugg").tokens
    assert "[UNK]" not in typo and typo[1] == "s" and typo[-2] == "##g"
    assert tokenizer.encode("red 杯").tokens == ["[CLS]", "red", "[UNK]", "[SEP]"]  # a character never seen


def test_vocabulary_keeps_to_vocab_size_most_frequent_first():
    rare = [f"rareword{n}" for n in range(200)]  # seen once each
    tokenizer = train_tokenizer(TEXTS + rare, ModelConfig(text_encoder="scratch", vocab_size=100))
    vocabulary = tokenizer.get_vocab()
    assert len(vocabulary) == 100
    assert {"mug", "striped", "red", "lamp"} <= set(vocabulary) and "rareword199" not in vocabulary
    assert "[UNK]" not in tokenizer.encode("rareword199").tokens  # it still splits into characters
