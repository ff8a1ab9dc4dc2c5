"""The SMAR model: tokenizer, towers, model kinds, losses, pretrained weights, the frozen-encoder caches and
the saved model."""
