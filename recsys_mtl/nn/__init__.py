"""Building blocks: feature encoders (dense vector or tokens) and MLP / expert / gate blocks."""
