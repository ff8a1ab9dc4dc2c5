"""Entry point for Prefect: `prefect deploy flows/pipeline.py:smar_pipeline`, or `python flows/pipeline.py` to serve it.

The flow itself lives in smar.pipeline.flow.
"""

from smar.pipeline.flow import serve_deployment, smar_pipeline

__all__ = ["smar_pipeline", "serve_deployment"]

if __name__ == "__main__":
    serve_deployment()
