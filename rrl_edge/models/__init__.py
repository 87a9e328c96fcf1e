"""Model families of rrl-edge (one file per family, timm style)."""

from rrl_edge.models.rrlnet import (
    RRLNet,
    RRLNetConfig,
    RRLNetTrain,
    build_rrlnet,
    build_rrlnet_train,
)

__all__ = ["RRLNet", "RRLNetConfig", "RRLNetTrain", "build_rrlnet", "build_rrlnet_train"]
