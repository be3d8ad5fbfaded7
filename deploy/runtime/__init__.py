"""The torch-free deploy runtime: step runners (ONNX Runtime, TensorRT), state and write records, flash
budget, state journal, control loop and robot protocol. Imports numpy, ONNX Runtime / TensorRT and
``aura.contract`` only (tests/test_architecture.py)."""
