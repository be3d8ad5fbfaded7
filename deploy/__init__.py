"""AURA's deploy side: ONNX/TensorRT export, the torch-free runtime, flash budget and state journal.

The runtime modules (runtime, ort_runner, trt_runner, state, journal, budget, envs, loop) import numpy and
ONNX Runtime / TensorRT only; ``export``, ``fused_step`` and ``cuda_graph`` import torch and are never
imported by them. See docs/deploy.md.
"""
