"""smar: Semantic-enhanced Modality-Asymmetric Retrieval, trained, shipped and served."""

from smar.core import torchvision_cpu

# Every process that imports smar gets it, including those that never run an entry point of
# ours: MLflow's pyfunc loader, Dask and Ray workers unpickling a task. It costs nothing until
# torchvision is first imported.
torchvision_cpu.install()

__version__ = "0.1.0"
