"""Cross-spectral image registration on the deployed patch matcher (``rrl-edge register``, ``register-eval``).

Coarse rotation/scale/shift from phase correlation of gradient maps, then network-verified local matches in a
window around a hypothesis, then OpenCV USAC/MAGSAC affine estimation. Sits above the runners (layer 2); the
command line registers its sub-commands through :func:`rrl_edge.registration.commands.add_commands`.
"""

# what a fit on correspondences may be (defined here, free of OpenCV, because the CLI builds its choices from it
# on a device without OpenCV); "auto": similarities, an affine only where template matching's matches demand one
# (GRIC and a 2-px gain: estimate.refit, pipeline.RegisterConfig.motion)
MOTIONS = ("auto", "similarity", "affine")
# RegisterConfig's defaults that `rrl-edge register` flags show, here for the same reason
DEFAULT_MOTION = "auto"
# register-eval's pair sets: "test", the reported pairs; "val", the training images under random affines
SPLITS = ("test", "val")
NETWORK_KEYPOINTS = 32  # VIS keypoints of the network round (RegisterConfig.window)
