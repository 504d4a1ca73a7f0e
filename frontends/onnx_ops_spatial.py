"""ONNX converters for indexing (gather/scatter), transposed and N-d windows, resize, attention."""

from __future__ import annotations
