"""One module per feature kind, found by package scan (:func:`recsys_mtl.features.registry.kinds`)."""
