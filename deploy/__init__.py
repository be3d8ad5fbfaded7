"""AURA's deploy side, split at the torch boundary.

- ``deploy.runtime``: the torch-free runtime ``aura run`` loads (numpy, ONNX Runtime / TensorRT only): the
  step runners, the flash budget, the crash-safe state journal, the control loop and the robot protocol.
- ``deploy.export``: the torch-side tools: ONNX export and parity, the CUDA-graph and Triton runners of GPU
  development machines, and the runtime benchmark (which exports a random model when given none).

tests/test_architecture.py enforces that nothing under ``deploy/runtime`` imports torch. See docs/deploy.md.
"""
