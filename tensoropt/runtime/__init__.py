"""Compiled artifacts: the directory format (``artifact``) and the callable model (``model``)."""
