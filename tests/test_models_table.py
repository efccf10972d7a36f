"""Tables in torch: checks on load, exact at grid points, interpolation spaces, out-of-range
policy, the compiled fast path; and the hardware config's errors."""

import shutil

import h5py
import numpy as np
import pytest
import torch

from cimlut.models.config import ConfigError, HardwareConfig
from cimlut.models.table import OutOfRangeError, Table, TableError
from cimlut.paths import data_dir

TABLES = data_dir() / "tables"


def test_grid_points_are_exact_and_corner_is_chosen_by_name():
    with h5py.File(TABLES / "gaincell_2t.h5") as f:
        g = f["read"]
        corners = [c.decode() if isinstance(c, bytes) else c for c in g["corner"][()]]
        q = g["qread"][corners.index("ss")]
        temps, vs, tp = g["temperature"][()], g["vstore"][()], g["tpw"][()]
    t = Table.load(TABLES / "gaincell_2t.h5", "read", "ss", axes={"vstore": "V", "tpw": "s"},
                   quantities={"qread": "C"})
    ii = np.array([0, 3, 6]), np.array([5, 20, 36]), np.array([0, 2, 4])
    got = t("qread", temperature=torch.tensor(temps[ii[0]]), vstore=torch.tensor(vs[ii[1]]),
            tpw=torch.tensor(tp[ii[2]]))
    np.testing.assert_allclose(got.numpy(), q[ii], rtol=1e-12)
    tt = Table.load(TABLES / "gaincell_2t.h5", "read", "tt")
    # the slow corner's read nFET delivers less charge
    assert float(t("qread", temperature=27, vstore=0.8, tpw=1e-8)) < 0.8 * float(
        tt("qread", temperature=27, vstore=0.8, tpw=1e-8))


def test_interpolation_follows_the_declared_spaces():
    """Read charge is exponential in the stored voltage: interpolated in asinh space the
    midpoint is near the geometric mean of its neighbours, not the arithmetic one."""
    t = Table.load(TABLES / "gaincell_2t.h5", "read", "tt")
    a, b = (float(t("qread", temperature=27, vstore=v, tpw=1e-8)) for v in (0.7, 0.725))
    mid = float(t("qread", temperature=27, vstore=0.7125, tpw=1e-8))
    assert a < mid < b
    assert abs(np.log(mid) - 0.5 * (np.log(a) + np.log(b))) < 0.01
    assert mid < 0.5 * (a + b) * 0.99


def test_monotonic_physics_through_the_interpolation():
    t = Table.load(TABLES / "gaincell_2t.h5", "retention", "tt")
    times = torch.logspace(-7, -2.7, 200, dtype=torch.float64)
    v = t("v_sn", temperature=40.0, vinit=0.65, time=times)
    assert torch.all(torch.diff(v) <= 1e-9), "retention must decay monotonically"
    hot = t("v_sn", temperature=80.0, vinit=0.65, time=1e-4)
    cold = t("v_sn", temperature=10.0, vinit=0.65, time=1e-4)
    assert hot < cold


def test_out_of_range_is_clamped_and_counted_or_raises():
    t = Table.load(TABLES / "charge_to_pulse.h5", "transfer", "tt")
    top = float(t("tpulse", temperature=27, qin=200e-15))
    over = t("tpulse", temperature=27, qin=torch.tensor([300e-15, 100e-15, -1e-15]))
    assert float(over[0]) == pytest.approx(top)
    assert t.out_of_range == {"qin": 2}
    assert "transfer.qin: 2" in t.report()
    strict = Table.load(TABLES / "charge_to_pulse.h5", "transfer", "tt", policy="raise")
    with pytest.raises(OutOfRangeError, match=r"qin=3e-13 C is outside"):
        strict("tpulse", temperature=27, qin=torch.tensor([300e-15]))


def test_compiled_lookup_matches_the_reference_path():
    t = Table.load(TABLES / "gaincell_2t.h5", "read", "tt")
    g = torch.Generator().manual_seed(1)
    temp = torch.rand(5000, generator=g) * 85
    vs = torch.rand(5000, generator=g) * 0.9
    tpw = 1e-9 + torch.rand(5000, generator=g) * 14e-9
    ref = t("qread", temperature=temp, vstore=vs, tpw=tpw)
    fast = t.interpolator("qread", compile=False)(temp, vs, tpw)
    err = ((fast.double() - ref).abs() / ref.abs().clamp_min(1e-17)).max()
    assert err < 1e-4
    t.interpolator("qread", compile=False)(temp, vs + 1.0, tpw)
    assert t.out_of_range["vstore"] > 0


def test_bad_tables_name_the_file_and_the_item(tmp_path):
    bad = tmp_path / "old.h5"
    shutil.copy(TABLES / "charge_to_pulse.h5", bad)
    with h5py.File(bad, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(TableError, match=r"old\.h5: schema version 99"):
        Table.load(bad, "transfer")
    with pytest.raises(TableError, match=r"no table 'nope'"):
        Table.load(TABLES / "charge_to_pulse.h5", "nope")
    with pytest.raises(TableError, match=r"missing quantity 'qout'"):
        Table.load(TABLES / "charge_to_pulse.h5", "transfer", quantities={"qout": "C"})
    with pytest.raises(TableError, match=r"quantity 'tpulse' is in 's', expected 'ns'"):
        Table.load(TABLES / "charge_to_pulse.h5", "transfer", quantities={"tpulse": "ns"})
    with pytest.raises(TableError, match=r"missing axis 'vin'"):
        Table.load(TABLES / "charge_to_pulse.h5", "transfer", axes={"vin": "V"})
    with pytest.raises(TableError, match=r"no corner 'xx'"):
        Table.load(TABLES / "charge_to_pulse.h5", "transfer", "xx")
    with pytest.raises(TableError, match=r"no such table file"):
        Table.load(tmp_path / "missing.h5", "transfer")


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'adc_bit'; did you mean 'adc_bits'"):
        HardwareConfig.from_dict({"adc_bit": 4})
    with pytest.raises(ConfigError, match=r"adc_bits = 'four' should be a int"):
        HardwareConfig.from_dict({"adc_bits": "four"})
    with pytest.raises(ConfigError, match=r"corner = 'xx', expected one of"):
        HardwareConfig.from_dict({"corner": "xx"})
    with pytest.raises(ConfigError, match=r"input_encoding = 'morse', expected one of"):
        HardwareConfig(input_encoding="morse")      # checked however the config is made
    assert HardwareConfig(temperature=85).temperature == 85.0
    # --set values arrive as text and are parsed by the field's type, never guessed
    assert HardwareConfig.parse("ideal", "TRUE") is True
    assert HardwareConfig.parse("adc_bits", "6") == 6
    assert HardwareConfig.parse("t_max", "1e-8") == 1e-8
    with pytest.raises(ConfigError, match=r"adc_bits = '6.5' should be a int"):
        HardwareConfig.parse("adc_bits", "6.5")
    with pytest.raises(ConfigError, match=r"ideal = 'maybe' should be true or false"):
        HardwareConfig.parse("ideal", "maybe")
    f = tmp_path / "hw.toml"
    f.write_text('[hardware]\nadc_bits = 6\ntemperature = 85\nwindw = 10\n')
    with pytest.raises(ConfigError, match=r"hw\.toml: unknown key 'windw'; did you mean 'window'"):
        HardwareConfig.load(f)
    f.write_text('[hardware]\nadc_bits = 6\ntemperature = 85\n')
    cfg = HardwareConfig.load(f)
    assert cfg.adc_bits == 6 and cfg.temperature == 85.0
    assert "Leroux" in cfg.describe() and "Wang" in cfg.describe()
