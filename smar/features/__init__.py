"""The frozen encoders' outputs over a catalog, computed once by the featurize step (smar.features.step)."""
