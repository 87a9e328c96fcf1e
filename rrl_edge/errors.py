"""User-facing errors: each names the file or argument and what is wrong with it."""


class RRLEdgeError(Exception):
    """Base class; the command line prints these without a traceback and exits non-zero."""


class DataError(RRLEdgeError, ValueError):
    """A data folder, image pair, patch file or label file that cannot be used."""


class CheckpointError(RRLEdgeError, ValueError):
    """A checkpoint that is missing, corrupt, or not an rrl-edge checkpoint."""


class InputError(RRLEdgeError, ValueError):
    """Arrays handed to the model with the wrong shape, dtype or NaNs."""


class ExportError(RRLEdgeError, ValueError):
    """ONNX export, INT8 calibration or TensorRT engine building that cannot go on (bad flags, folders, budget)."""


class OutputError(RRLEdgeError, ValueError):
    """An output path that would overwrite an input, cannot be written, or is in use by another run."""


class MissingDependency(RRLEdgeError, ImportError):
    """An optional package a command needs is not installed; the message says which extra brings it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every ``finally`` (temp files, staging folders, locks) still runs."""
