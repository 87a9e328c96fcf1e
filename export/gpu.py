"""Which CUDA GPUs this machine has, asked of the CUDA driver itself (libcuda) through ctypes.

No pycuda or CUDA toolkit needed: a JetPack or desktop driver ships libcuda, and a machine without one
simply has no GPU. The engine manifest records the name and compute capability found here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from typing import List, Optional

CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "8.7" on a Jetson Orin, "8.6" on an RTX 30xx


def _libcuda() -> Optional[ctypes.CDLL]:
    for name in ("libcuda.so.1", ctypes.util.find_library("cuda")):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def cuda_devices() -> List[GpuInfo]:
    """Every GPU the CUDA driver reports; empty when there is no driver or no device."""
    lib = _libcuda()
    if lib is None or lib.cuInit(0) != 0:
        return []
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return []
    devices = []
    for index in range(count.value):
        device = ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(device), index) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, device)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        lib.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
        devices.append(GpuInfo(index, name.value.decode(errors="replace"), f"{major.value}.{minor.value}"))
    return devices
