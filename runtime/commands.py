"""The device-side sub-commands of `rrl-edge`: run, parity, bench (one module each, argparse only at import)."""

from __future__ import annotations

import argparse
import importlib

COMMAND_MODULES = ("run_command", "parity_command", "bench_command")


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register each command module's sub-parser (each module has ``add_command(sub)``)."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"rrl_edge.runtime.{name}").add_command(sub)
