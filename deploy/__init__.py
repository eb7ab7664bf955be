"""Deployment: ONNX export of any task's inference graph, int8 quantization, runtimes and latency benchmarks."""

from mobilenets.deploy.export import export_onnx, inference_model, read_metadata

__all__ = ["export_onnx", "inference_model", "read_metadata"]
