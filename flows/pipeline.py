"""Entry point for Prefect: the deployments in prefect.yaml (`prefect deploy --all`), or
`python flows/pipeline.py` to serve the pipeline from this machine.

The flows themselves live in smar.pipeline.flow.
"""

from smar.core.process import setup

setup()  # before the flows import Prefect

from smar.pipeline.flow import serve_deployment, smar_learn, smar_pipeline, smar_promote, smar_reindex  # noqa: E402

__all__ = ["smar_pipeline", "smar_reindex", "smar_learn", "smar_promote", "serve_deployment"]

if __name__ == "__main__":
    serve_deployment()
