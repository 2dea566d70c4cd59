"""The run configuration: one typed dataclass per section (`sections`, the steer section in `steer`), the
range checks (`checks`), the YAML loader (`loader`), the generated reference (`docs`) and the shipped
configs (`shipped`). `from headsteer.config import RunConfig` (and every section) works as before."""

from headsteer.config.sections import (
    DataConfig,
    ExtractConfig,
    ModelConfig,
    PruneConfig,
    RunConfig,
    SAEConfig,
    check_out_path,
)
from headsteer.config.steer import SteerConfig

__all__ = [
    "DataConfig",
    "ExtractConfig",
    "ModelConfig",
    "PruneConfig",
    "RunConfig",
    "SAEConfig",
    "SteerConfig",
    "check_out_path",
]
