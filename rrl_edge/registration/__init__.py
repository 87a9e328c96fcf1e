"""Cross-spectral image registration on the deployed patch matcher (``rrl-edge register``, ``register-eval``).

Coarse rotation/scale/shift from phase correlation of gradient maps, then network-verified local matches in a
shrinking window, then OpenCV USAC/MAGSAC affine estimation. Sits above the runners (layer 2); the command line
registers its sub-commands through :func:`rrl_edge.registration.commands.add_commands`.
"""
