"""Everything a run reads besides the model, read before the model loads.

Loading SmolLM2 takes a minute on two cores: a broken table, a temperature outside the
tables, or a calibration file that is not one must stop the run before that, not after.
"""

from __future__ import annotations

from pathlib import Path

from .config import HardwareConfig


def check_inputs(config: HardwareConfig, calibration: str | Path | None = None) -> None:
    """Load the device tables the config makes analog (each error names its file) and read
    the calibration file's form."""
    if config.analog in ("linear", "both"):
        from .rram import RramDevice
        RramDevice(config)
    if config.analog in ("attention", "both"):
        from .gaincell import GainCellDevice
        GainCellDevice(config)
    if calibration:
        from .calibrate import read_calibration
        read_calibration(calibration)
