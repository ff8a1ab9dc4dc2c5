"""The scratch tokenizer: built from the texts, the same ids every time, no unknown typos."""

import json
import os
import subprocess
import sys
from pathlib import Path

from smar.core.config import ModelConfig
from smar.model.tokenizer import SPECIAL_TOKENS, train_tokenizer

TEXTS = ["Red striped ceramic mug", "Blue striped mug, large", "Oak lamp | Lumen", "red mug", "blue lamp shade"] * 3

# Builds the tokenizer from TEXTS in a fresh interpreter and prints it serialised.
_BUILD = """
import json, sys
from smar.core.config import ModelConfig
from smar.model.tokenizer import train_tokenizer
tokenizer = train_tokenizer(json.loads(sys.argv[1]), ModelConfig(text_encoder="scratch"))
print(json.dumps({"tokenizer": tokenizer.to_str(), "ids": [e.ids for e in
tokenizer.encode_batch(json.loads(sys.argv[1]))]}))
"""


def test_same_texts_give_the_same_ids_in_every_process():
    """Two interpreters with different string hash seeds build byte-identical tokenizers: ids must
    not follow hash order (what made the `tokenizers` trainer's ids vary from run to run)."""
    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    runs = [  # started together: each pays its own import time
        subprocess.Popen(
            [sys.executable, "-c", _BUILD, json.dumps(TEXTS)],
            cwd=root,
            env=env | {"PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in ("1", "2")
    ]
    outputs = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
        outputs.append(json.loads(stdout))
    assert outputs[0] == outputs[1]
    here = train_tokenizer(TEXTS, ModelConfig(text_encoder="scratch"))  # and this process, whatever its seed
    assert here.to_str() == outputs[0]["tokenizer"]
    vocabulary = json.loads(outputs[0]["tokenizer"])["model"]["vocab"]
    assert vocabulary == here.get_vocab() and len(vocabulary) > len(SPECIAL_TOKENS)
    assert [vocabulary[token] for token in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))


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
