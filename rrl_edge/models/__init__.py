"""Model families of rrl-edge (one file per family, timm style)."""

from rrl_edge.contracts import POLARITIES
from rrl_edge.models.rrlnet import (
    RRLNet,
    RRLNetConfig,
    RRLNetTrain,
    build_rrlnet,
    build_rrlnet_train,
    with_polarity,
)

__all__ = ["POLARITIES", "RRLNet", "RRLNetConfig", "RRLNetTrain", "build_rrlnet", "build_rrlnet_train", "with_polarity"]
