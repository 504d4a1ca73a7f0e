"""ONNX converters for math, logic, scans and composite normalizations/losses."""

from __future__ import annotations
