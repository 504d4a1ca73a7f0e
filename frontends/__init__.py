"""Model importers into the tensoropt IR (``tensoropt.frontends``).

The text IR reader is :mod:`tensoropt.ir.io`; the ONNX and PyTorch importers
land with the frontends milestone.
"""
