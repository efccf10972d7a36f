"""`pip install .` must ship the netlists and data inside the wheel, and no PDK file."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_netlists_and_data_but_no_models(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("cimlut-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for cell in ("rram_1t1r", "gaincell_2t", "gaincell_pp", "charge_to_pulse"):
        assert any(n.startswith(f"cimlut/netlists/{cell}/") and n.endswith(".cir") for n in names)
        assert f"cimlut/netlists/{cell}/{cell}.inc" in names
        assert f"cimlut/netlists/{cell}/tables.toml" in names
        assert f"cimlut/data/tables/{cell}.h5" in names
    assert any(n.startswith("cimlut/data/golden/") and n.endswith(".h5") for n in names)
    assert not any("sky130" in n and n.endswith(".spice") for n in names)
    assert not any(n.startswith("cimlut/netlists/models/sky130") for n in names)
    assert any(n.endswith("LICENSE") for n in names)
