"""Runners that score patch pairs with TensorRT, ONNX Runtime or PyTorch (issue 4)."""
