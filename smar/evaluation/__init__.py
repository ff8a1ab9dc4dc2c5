"""Offline evaluation: the model beside zero-shot MiniLM and a random ranking, on every query and on the cold ones."""
