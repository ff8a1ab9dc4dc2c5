"""Training: the loop and its parts (batches, distributed processes, resumable state, the routing head)."""
