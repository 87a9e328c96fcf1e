"""The part of rrl-edge that runs on the device: runners (one per backend), scoring, `run`/`parity`/`bench`.

Importing this package and its core modules (``pairs``, ``runner``, ``registry``, ``manifest``) needs only
numpy, so a Jetson with TensorRT and pycuda (or ONNX Runtime) and no torch can use it. Each backend's
library is imported when its runner opens. The code a Jetson runs keeps to Python 3.8 (JetPack 5).
"""
