"""ONNX export, onnxsim simplification and TensorRT engine building."""
