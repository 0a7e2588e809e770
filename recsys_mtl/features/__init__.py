"""Feature kinds as plug-ins: each kind (one module of :mod:`recsys_mtl.features.kinds`) owns its spec,
fit, polars transform, ONNX subgraph, serving inputs and layout; see :mod:`recsys_mtl.features.base`.

This package is torch-free and onnx-free at import (graph building imports onnx when called)."""
