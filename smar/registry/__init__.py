"""The MLflow model registry: registering a version, the promotion gate, moving `champion`, the pyfunc model."""
