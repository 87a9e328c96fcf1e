"""The exported model's interface, shared by the exporter, the checks and the TensorRT builder.

Kept free of torch and onnx imports: `rrl-edge build` runs on a Jetson that has TensorRT and numpy only.
"""

OPSET = 17  # the newest opset TensorRT 8.5 (JetPack 5) parses; TensorRT 8.6 and 10.x parse it too
INPUT_NAMES = ("vis", "other")  # (batch, 1, 64, 64) float in [0, 1]: visible, and the other spectrum
OUTPUT_NAME = "score"  # (batch, 1) match probability
BATCH_DIM = "batch"
PATCH_SIZE = 64  # rrl_edge.models.rrlnet.PATCH_SIZE, without importing torch
