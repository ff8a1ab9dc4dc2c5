"""The pipeline: the steps in order, and the Prefect flow that chains them."""
