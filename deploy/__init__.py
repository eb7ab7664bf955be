"""Deployment: ONNX export of any task's inference graph, int8 quantization, runtimes, serving and latency
benchmarks. Names import on first use (``mobilenets.core.lazy``)."""

from mobilenets.core.lazy import lazy_exports

__all__ = ["export_onnx", "inference_model", "read_metadata"]
__getattr__ = lazy_exports(__name__, {"export_onnx": "export", "inference_model": "export", "read_metadata": "export"})
