"""Deployment: ONNX export with the tasks' post-processing, int8 quantization, and latency benchmarks."""

from mobilenets.deploy.export import DetectionExport, TaskExport, export_onnx, inference_model, read_metadata

__all__ = ["DetectionExport", "TaskExport", "export_onnx", "inference_model", "read_metadata"]
