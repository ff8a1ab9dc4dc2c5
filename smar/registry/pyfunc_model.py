"""The MLflow pyfunc model logged for each version (MLflow "models from code").

MLflow loads this file when it loads a version; it is not imported by the rest of smar.
Input: a frame with a `query` column; param `k` (default 10). Output: one row per query
with `item_ids` and `scores`, best first, and `index`, the item view that served it.
"""

import mlflow
import pandas as pd

from smar.retrieval.retriever import Retriever


class SmarRetrieverModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.retriever = Retriever(context.artifacts["model"], context.artifacts["index"])

    def predict(self, context, model_input: pd.DataFrame, params=None):  # the signature is logged explicitly
        k = int((params or {}).get("k", 10))
        queries = pd.DataFrame(model_input)["query"].astype(str).tolist()
        hits = self.retriever.search(queries, k)
        return pd.DataFrame({"query": queries, "item_ids": hits.item_ids, "scores": hits.scores, "index": hits.views})


mlflow.models.set_model(SmarRetrieverModel())
