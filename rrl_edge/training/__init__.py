"""MLPP training: augmentation, batching, the training loop."""
