"""Readers, splits, fitted preprocessing (JSON state), batch loaders and the synthetic generator."""
