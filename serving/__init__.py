"""Torch-free serving of a model exported by ``recsys-mtl export``: onnxruntime + numpy + FastAPI.

This package must never import torch or recsys_mtl (a test enforces it): the export folder's
ONNX graph holds the preprocessing and ``metadata.json`` describes the inputs.
"""

from serving.predictor import Predictor, choose_providers
from serving.schema import RequestError, Schema

__all__ = ["Predictor", "RequestError", "Schema", "choose_providers"]
