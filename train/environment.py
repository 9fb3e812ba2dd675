"""What the training stack sees on this machine: torch build, devices, precision support."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    memory_gib: float
    capability: str
    bf16: bool


@dataclass(frozen=True)
class TrainEnvironment:
    python: str
    torch: str
    cuda_build: str | None
    cuda_available: bool
    cpu_threads: int
    devices: list[DeviceInfo] = field(default_factory=list)
    distributed: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def probe_environment() -> TrainEnvironment:
    """Inspect torch and the accelerators; cheap, and safe on a machine without a GPU."""
    import torch

    devices = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(DeviceInfo(
                index=i, name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                capability=f"{props.major}.{props.minor}",
                bf16=props.major >= 8))
    dist_vars = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    return TrainEnvironment(
        python=platform.python_version(),
        torch=torch.__version__,
        cuda_build=torch.version.cuda,
        cuda_available=torch.cuda.is_available(),
        cpu_threads=torch.get_num_threads(),
        devices=devices,
        distributed={k: os.environ[k] for k in dist_vars if k in os.environ},
    )
