"""Wire parasitics: the fast effective-matrix solve against plain nodal analysis, its
physics, the crossbar that uses it, and the inputs it refuses."""

import numpy as np
import pytest
import torch
from torch import nn

from cimlut.errors import UsageError
from cimlut.models.config import ConfigError, HardwareConfig
from cimlut.models.crossbar import CrossbarLinear
from cimlut.models.parasitics import effective_conductance, effective_pairs, nodal_solve
from cimlut.models.rram import RramDevice


def cells(rows, cols, seed=0, batch=()):
    gen = torch.Generator().manual_seed(seed)
    return 6.5e-6 + 7.25e-5 * torch.rand(*batch, rows, cols, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("rows,cols,r_row,r_col,r_clamp", [
    (5, 7, 1.0, 2.0, 0.0), (6, 4, 0.0, 1.5, 0.0), (6, 4, 1.0, 0.0, 0.0),
    (6, 4, 0.0, 0.0, 50.0), (6, 4, 2.0, 1.0, 30.0), (6, 4, 0.0, 1.0, 30.0),
    (6, 5, 300.0, 200.0, 1000.0), (1, 2, 1.0, 1.0, 0.0), (3, 1, 1.0, 1.0, 5.0),
    (24, 32, 2.0, 2.0, 10.0)])
def test_matches_nodal_analysis(rows, cols, r_row, r_col, r_clamp):
    """Every readout current for unit drives, against a sparse solve of every node."""
    g = cells(rows, cols, seed=rows * cols)
    m = effective_conductance(g, r_row, r_col, r_clamp).numpy()
    ref = nodal_solve(g.numpy(), np.eye(rows), r_row, r_col, r_clamp)
    assert np.abs(m - ref).max() <= 1e-6 * np.abs(ref).max()
    # and the drop is real: the wires take a visible share at these sizes
    assert np.abs(m - g.numpy()).max() > 1e-5 * float(g.max())


def test_superposition_for_any_drive():
    """M is exact for any drive vector (linear cells, idle rows at 0 V)."""
    g = cells(12, 10, seed=3)
    drive = np.random.default_rng(0).uniform(0, 0.2, size=(5, 12))
    m = effective_conductance(g, 1.5, 1.0, 20.0).numpy()
    ref = nodal_solve(g.numpy(), drive, 1.5, 1.0, 20.0)
    np.testing.assert_allclose(drive @ m, ref, rtol=1e-6)


def test_physics():
    """Zero wires: M = g. Wires only take current away, more the longer they are and the
    further a cell sits from its driver and readout; a batch equals its tiles one by one."""
    g = cells(16, 16, seed=1, batch=(3,))
    assert torch.equal(effective_conductance(g, 0.0, 0.0), g)
    m1 = effective_conductance(g, 1.0, 1.0)
    m2 = effective_conductance(g, 2.0, 2.0)
    assert bool((m1 < g).all()) and bool((m2 < m1).all())
    same = torch.ones(1, 16, 16, dtype=torch.float64) * 4e-5
    loss = 1 - effective_conductance(same, 2.0, 2.0)[0] / 4e-5
    assert loss[0, -1] > loss[0, 0]        # far from the driver (row wire)
    assert loss[0, 0] > loss[-1, 0]        # far from the readout (column wire)
    for k in range(3):
        torch.testing.assert_close(m1[k], effective_conductance(g[k], 1.0, 1.0), rtol=1e-12, atol=0)


def test_pairs_tile_by_tile():
    """A layer's pairs split into tiles (edge tiles smaller), columns interleaved +,-."""
    gp, gm = cells(10, 7, seed=4), cells(10, 7, seed=5)
    mp, mn = effective_pairs(gp, gm, 4, 3, 1.0, 2.0)
    tile = torch.empty(4, 6, dtype=torch.float64)
    tile[:, 0::2], tile[:, 1::2] = gp[4:8, 3:6], gm[4:8, 3:6]
    m = effective_conductance(tile, 1.0, 2.0)
    torch.testing.assert_close(mp[4:8, 3:6], m[:, 0::2])
    torch.testing.assert_close(mn[4:8, 3:6], m[:, 1::2])
    edge = torch.empty(2, 2, dtype=torch.float64)
    edge[:, 0::2], edge[:, 1::2] = gp[8:, 6:], gm[8:, 6:]
    torch.testing.assert_close(mp[8:, 6:], effective_conductance(edge, 1.0, 2.0)[:, 0::2])


def test_crossbar_uses_the_effective_matrix():
    """With wires, the layer's weights are the tiles' effective pairs of the conductances it
    programmed; without, the plain differences; ideal layers ignore wires."""
    torch.manual_seed(0)
    lin = nn.Linear(40, 12)
    base = dict(tile_rows=16, tile_cols=8, weight_spread=False)
    cfg = HardwareConfig(wire_row=2.0, wire_col=3.0, **base)
    dev = RramDevice(cfg)
    m = CrossbarLinear.from_linear(lin, cfg, dev, name="l", keep_gaps=True)
    plain = CrossbarLinear.from_linear(lin, HardwareConfig(**base), dev, name="l")
    gp, gm = (dev.read_conductance(gap) for gap in m.gaps)
    dg = float(cfg.g_max - getattr(dev, "g_min", cfg.g_min))
    torch.testing.assert_close(plain.weight_cond, ((gp - gm) / dg).float(), rtol=0, atol=1e-6)
    mp, mn = effective_pairs(gp, gm, 16, 4, 2.0, 3.0)
    torch.testing.assert_close(m.weight_cond, ((mp - mn) / dg).float(), rtol=0, atol=1e-6)
    assert float((m.weight_cond - plain.weight_cond).abs().max()) > 1e-4
    ideal = CrossbarLinear.from_linear(lin, cfg.replace(ideal=True), RramDevice(cfg.replace(ideal=True)))
    with torch.no_grad():
        torch.testing.assert_close(ideal(torch.ones(2, 40)), lin(torch.ones(2, 40)),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", ["wire_row", "wire_col", "clamp_resistance"])
def test_negative_resistance_refused(key):
    with pytest.raises(ConfigError, match=f"{key} = -1.0 ohm is out of range"):
        HardwareConfig(**{key: -1.0})
    with pytest.raises(UsageError, match=f"{key} = -1.0 ohm"):
        effective_conductance(cells(2, 2), **{"r_row": 0.0, "r_col": 0.0, "r_clamp": 0.0,
                                              {"wire_row": "r_row", "wire_col": "r_col",
                                               "clamp_resistance": "r_clamp"}[key]: -1.0})


def test_bad_conductances_refused():
    g = cells(3, 3)
    g[1, 2] = 0.0
    with pytest.raises(UsageError, match="cell conductance 0.0 S"):
        effective_conductance(g, 1.0, 1.0)
    with pytest.raises(UsageError, match=r"shape \(3,\)"):
        effective_conductance(torch.ones(3), 1.0, 1.0)
