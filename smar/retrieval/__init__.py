"""Retrieval: item embeddings (export), the FAISS index, and the retriever that searches them."""
