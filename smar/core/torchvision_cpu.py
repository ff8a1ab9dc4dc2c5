"""Let torchvision (and so timm) import on a CPU-only torch.

The registry's torchvision 0.28.0 wheel is a CUDA build. On CPU torch its C extension
fails to load, and `import torchvision` then dies registering fake kernels for the
`torchvision::nms` operator that was never defined. Defining the two operator schemas
first is enough for the import to succeed; torchvision's own C++ ops (nms, roi_align,
io.decode_*) stay unavailable, and smar never calls them. On a CUDA machine the
extension loads and this does nothing.

The fix runs lazily, from a meta-path finder, the first time "torchvision" is imported,
so importing smar costs nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_library = None  # keeps the operator definitions alive for the life of the process


def _define_missing_ops() -> None:
    global _library
    import torch

    if hasattr(torch.ops.torchvision, "nms"):
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import glob
    import os

    for location in spec.submodule_search_locations:
        for extension in glob.glob(os.path.join(location, "_C*.so")):
            try:
                torch.ops.load_library(extension)
                return
            except OSError:
                pass
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        _define_missing_ops()
        return None  # let the normal finders import torchvision


def install() -> None:
    if "torchvision" in sys.modules or any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionFinder())
