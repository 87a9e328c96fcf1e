"""Upper bounds on what a flag or a file may ask for, so no input can make a command hang or take > 2 GB.

Defined once here (standard library only: the device CLI reads them too). Each bound is far above what a
real run uses and far below what would exhaust a 2-core, 8 GB machine or a Jetson.
"""

from __future__ import annotations

MAX_BATCH = 1024  # pairs per inference or training batch (the README's largest is 256)
MAX_THREADS = 256  # CPU threads for a backend
MAX_WIDTH = 2.0  # channel multiplier of the network (1.0 = the paper's 9.4 M parameters; 2.0 = 37.6 M)
MAX_CHANNELS = 2048  # widest layer a checkpoint's config may ask for (the paper's widest is 512)
MAX_LR = 1.0  # peak learning rate (the paper uses 2e-4, the default 1e-3)
MAX_PIXELS = 50_000_000  # pixels per image, checked from the header before decoding (a 12000x12000 pair is 4.3 GB)
MAX_BENCH_SECONDS = 3600.0  # minimum timed seconds per bench row
MAX_BENCH_ITERS = 100_000  # minimum timed runs per bench row (the default is 20; at batch 1 this is minutes)
MAX_BENCH_WARMUP = 10_000  # untimed runs before them
MAX_FPR95_BUDGET = 100.0  # FPR95 points a parity budget may allow (FPR95 is a percentage)
