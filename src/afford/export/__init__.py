"""Export the trained models with their backbones to ONNX (``afford export``; extra
``afford[export]``).  See docs/export.md and :mod:`afford.export.onnx`."""

from afford.export.onnx import export, read_metadata, run_onnx, session

__all__ = ["export", "read_metadata", "run_onnx", "session"]
