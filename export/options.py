"""What `rrl-edge export` depends on, and its defaults, written once (the export command's flags read them).

Light at import (numpy at most, no onnx, torch or scikit-learn): the command line builds its parser from these
defaults on a device that has neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rrl_edge.calibration.quantize import DEFAULT_METHOD
from rrl_edge.contracts import DEFAULT_ENGINE
from rrl_edge.export.tensorrt_build import BatchProfile
from rrl_edge.runtime.parity import DEFAULT_BUDGET

# Every test pair (29,934 on VIS-NIR): with 1,000 non-matching pairs a category's FPR95 moves in 0.1-point steps and
# its noise alone reaches the 0.3 budget (benchmarks/int8_study.py noise); the full split halves that, and the
# proof then measures exactly what `rrl-edge parity` in CI measures.
PROOF_PAIRS_PER_CATEGORY = 0


@dataclass
class ExportOptions:
    out_dir: Path
    checkpoint: Optional[Path] = None  # None: the default shipped model (rrl_edge.checkpoint.DEFAULT_MODEL)
    int8: bool = False
    fp16: bool = False
    calib_data: Optional[Path] = None  # None: the shared VIS-NIR folder (its training split)
    calib_samples: int = 512
    calib_method: str = DEFAULT_METHOD  # 99.999th percentile of |activation|: see calibration/quantize.py
    eval_data: Optional[Path] = None  # None: the shared VIS-NIR folder (its test split)
    proof_pairs: int = PROOF_PAIRS_PER_CATEGORY  # per category; 0 = every test pair
    proof_cut: str = "default"  # "default": the pairs `rrl-edge eval` scores; "strongest": the strongest-first cut
    budget: float = DEFAULT_BUDGET  # FPR95 points of the proof rule (rrl_edge.runtime.parity.failures)
    seed: int = 0
    profile: BatchProfile = field(default_factory=BatchProfile)
    workspace_mb: int = 1024
    engine: str = DEFAULT_ENGINE
    timing_cache: Optional[Path] = None
    progress: bool = True
    polarity: Optional[str] = None  # rrl_edge.contracts.POLARITIES, exported into the graph; None: the checkpoint's
