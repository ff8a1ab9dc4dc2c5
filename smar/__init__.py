"""smar: Semantic-enhanced Modality-Asymmetric Retrieval, trained, shipped and served."""

from smar import _torchvision_fix

_torchvision_fix.install()

__version__ = "0.1.0"
