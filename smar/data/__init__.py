"""Datasets: reading, validating, generating, importing and splitting them, and the decoded-image cache."""
