"""The torch side of deployment: the per-step graph's ONNX export and parity (``step_graph``), the fused
Triton step and CUDA-graph runner (``fused_step``, ``fused_kernels``, ``cuda_graph``; GPU development
machines) and the runtime benchmark (``bench``)."""

from deploy.export.step_graph import export_checkpoint, export_layer, export_step, parity

__all__ = ["export_checkpoint", "export_layer", "export_step", "parity"]
