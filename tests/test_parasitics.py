"""Wire parasitics: the fast effective-matrix solve against plain nodal analysis, its
physics, the crossbar that uses it, and the inputs it refuses."""

import numpy as np
import pytest
import torch
from torch import nn

from cimlut.errors import UsageError
from cimlut.models.config import ConfigError, HardwareConfig
from cimlut.models.crossbar import CrossbarLinear
from cimlut.models.parasitics import (cell_voltages, driver_admittance, effective_conductance,
                                      effective_pairs, gated_pulse_charge, nodal_solve)
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
    mp, mn = effective_pairs(gp, gm, 16, 4, 2.0, 3.0,
                             chord=lambda g, u: dev.chord_conductance(g, u * cfg.v_read))
    torch.testing.assert_close(m.weight_cond, ((mp - mn) / dg).float(), rtol=0, atol=1e-6)
    # linearised at the operating point: below the v_read chord, by the sinh I-V's share
    lp, ln = effective_pairs(gp, gm, 16, 4, 2.0, 3.0)
    assert bool((mp < lp).all()) and bool((mp > 0.99 * lp).all())
    assert float((m.weight_cond - plain.weight_cond).abs().max()) > 1e-4
    ideal = CrossbarLinear.from_linear(lin, cfg.replace(ideal=True), RramDevice(cfg.replace(ideal=True)))
    with torch.no_grad():
        torch.testing.assert_close(ideal(torch.ones(2, 40)), lin(torch.ones(2, 40)),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("r_row,r_col,r_clamp", [
    (1.0, 2.0, 0.0), (0.0, 2.0, 0.0), (2.0, 0.0, 0.0), (0.0, 0.0, 40.0), (20.0, 10.0, 30.0)])
def test_cell_voltages_match_nodal_analysis(r_row, r_col, r_clamp):
    """Each cell's voltage with every row driven, against the sparse solve."""
    g = cells(9, 7, seed=2)
    u = cell_voltages(g, r_row, r_col, r_clamp).numpy()
    ref = nodal_solve(g.numpy(), np.ones((1, 9)), r_row, r_col, r_clamp, detail=True)["cell_v"][0]
    assert np.abs(u - ref).max() <= 1e-6
    assert 0 < u.min() and u.max() < 1 and (1 - u).max() > 1e-3


def test_fast_voltages_and_their_fallback():
    """The linearisation reads its cell voltages from a fixed point iteration (cheap) where
    the IR drop is small enough for it to converge, and from the walk where it is not: both
    give the nodal analysis' voltages, and the matrix is the same either way."""
    from cimlut.models import parasitics
    g = cells(12, 10, seed=5)
    for r, converges in ((5.0, True), (400.0, False)):
        ref = nodal_solve(g.numpy(), np.ones((1, 12)), r, r, 10.0, detail=True)["cell_v"][0]
        fast = parasitics._jacobi_voltages(g[None], r, r, 10.0)
        assert (fast is not None) == converges
        if converges:
            assert np.abs(fast[0].numpy() - ref).max() <= 1e-6
        seen = []

        def chord(gg, u):
            seen.append(u)
            return gg * (0.9 + 0.1 * u)
        m = effective_conductance(g, r, r, 10.0, chord=chord)
        assert np.abs(seen[0][0].numpy() - ref).max() <= 1e-6
        law = (g * (0.9 + 0.1 * torch.as_tensor(ref))).numpy()
        np.testing.assert_allclose(m.numpy(), nodal_solve(law, np.eye(12), r, r, 10.0),
                                   rtol=1e-6, atol=1e-6 * float(m.abs().max()))


def test_chord_conductance():
    """The table's I(v)/v: g itself at v_read, less below (sinh-like I-V), monotonic."""
    dev = RramDevice(HardwareConfig())
    g = dev.read_conductance(torch.linspace(0.2, 1.6, 8, dtype=torch.float64))
    v = dev.v_read
    torch.testing.assert_close(dev.chord_conductance(g, torch.full_like(g, v)), g,
                               rtol=1e-12, atol=0)
    c = torch.stack([dev.chord_conductance(g, torch.full_like(g, x))
                     for x in (0.9 * v, 0.95 * v, 0.99 * v)])
    assert bool((c[0] < c[1]).all()) and bool((c[1] < c[2]).all()) and bool((c[2] < g).all())
    ratio = c[1] / g                        # 10 mV below 0.2 V: ~0.3% less in the shipped table
    assert bool((ratio > 0.99).all()) and bool((ratio < 0.9995).all())


def test_linearised_at_the_operating_point():
    """Cells with the table's nonlinear I-V, every row driven: the nonlinear circuit (nodal
    analysis iterated to its fixed point) gives the readout currents that the effective
    matrix linearised at the operating point gives, to 1e-5 of full scale (one step of the
    fixed point: what is left is second order, measured 2.7e-6); the matrix of chord
    conductances at v_read misses by the sinh's share."""
    dev = RramDevice(HardwareConfig())
    gen = torch.Generator().manual_seed(7)
    g = dev.read_conductance(0.2 + 1.4 * torch.rand(12, 10, generator=gen, dtype=torch.float64))
    v, r_row, r_col = dev.v_read, 20.0, 10.0
    drive = np.full((1, 12), v)
    law = g.numpy()
    for _ in range(20):                     # the nonlinear circuit: I = chord(g, v) v per cell
        res = nodal_solve(law, drive, r_row, r_col, detail=True)
        law = dev.chord_conductance(g, torch.as_tensor(res["cell_v"][0])).numpy()
    exact = nodal_solve(law, drive, r_row, r_col)[0]
    op = drive @ effective_conductance(
        g, r_row, r_col, chord=lambda gg, u: dev.chord_conductance(gg, u * v)).numpy()
    plain = drive @ effective_conductance(g, r_row, r_col).numpy()
    fs = np.abs(exact).max()
    assert np.abs(op[0] - exact).max() <= 1e-5 * fs
    assert np.abs(plain[0] - exact).max() > 30 * np.abs(op[0] - exact).max()


@pytest.mark.parametrize("r_row,r_col,r_clamp", [
    (1.0, 2.0, 0.0), (0.0, 2.0, 0.0), (2.0, 0.0, 0.0), (0.0, 0.0, 30.0), (20.0, 10.0, 20.0)])
def test_driver_admittance_and_power(r_row, r_col, r_clamp):
    """A against the drivers' currents in nodal analysis; symmetric, off-diagonal <= 0,
    A 1 = M 1; and d^T A d is the power the cells, wires and clamps dissipate."""
    g = cells(7, 6, seed=11)
    a = driver_admittance(g, r_row, r_col, r_clamp).numpy()
    ref = nodal_solve(g.numpy(), np.eye(7), r_row, r_col, r_clamp, detail=True)["driver_i"].T
    assert np.abs(a - ref).max() <= 1e-6 * np.abs(ref).max()
    np.testing.assert_allclose(a, a.T, rtol=0, atol=1e-12 * np.abs(a).max())
    assert (a - np.diag(np.diag(a))).max() <= 0 and (np.diag(a) > 0).all()
    m = effective_conductance(g, r_row, r_col, r_clamp).numpy()
    np.testing.assert_allclose(a.sum(1), m.sum(1), rtol=1e-6)
    drive = np.random.default_rng(3).uniform(0, 0.2, size=(4, 7))
    res = nodal_solve(g.numpy(), drive, r_row, r_col, r_clamp, detail=True)
    np.testing.assert_allclose(((drive @ a) * drive).sum(1), res["cell_w"] + res["wire_w"],
                               rtol=1e-6)
    if r_row or r_col:
        assert (res["wire_w"] > 0).all()


def test_read_energy_with_wires():
    """A one-tile layer: what its row drivers deliver with every row on (the ledger's read
    current) is the nodal analysis' power in cells and wires, of the cells linearised at
    their voltages; below the wireless count (each cell at v_read) by the IR drop."""
    torch.manual_seed(1)
    lin = nn.Linear(16, 4, bias=False)
    base = dict(tile_rows=16, tile_cols=8, weight_spread=False)
    cfg = HardwareConfig(wire_row=20.0, wire_col=10.0, **base)
    dev = RramDevice(cfg)
    m = CrossbarLinear.from_linear(lin, cfg, dev, name="e", keep_gaps=True)
    plain = CrossbarLinear.from_linear(lin, HardwareConfig(**base), dev, name="e")
    g = torch.empty(16, 8, dtype=torch.float64)
    g[:, 0::2], g[:, 1::2] = (dev.read_conductance(gap) for gap in m.gaps)
    v = cfg.v_read
    law = dev.chord_conductance(g, cell_voltages(g, 20.0, 10.0) * v).numpy()
    res = nodal_solve(law, np.full((1, 16), v), 20.0, 10.0, detail=True)
    power = float(res["cell_w"][0] + res["wire_w"][0])
    np.testing.assert_allclose(v * res["driver_i"][0], v * m.row_current.double().numpy(),
                               rtol=1e-5)
    assert v * float(m.row_current.double().sum()) == pytest.approx(power, rel=1e-5)
    assert float(m.row_current.sum()) < 0.97 * float(plain.row_current.sum())
    torch.testing.assert_close(plain.row_current, (g.sum(1) * v).float())
    # the ledger bills it: t_read x v_read x the drive time per row x these currents
    from cimlut.models.ledger import Ledger
    for layer in (m, plain):
        layer.ledger = Ledger()
        with torch.no_grad():
            layer(torch.ones(1, 16))
    ratio = m.ledger.energy["prefill", "rram_read"] / plain.ledger.energy["prefill", "rram_read"]
    assert ratio == pytest.approx(float(m.row_current.sum() / plain.row_current.sum()), rel=1e-3)


def test_gated_pulse_width_slices():
    """Word-line-gated pulse widths: the charge is the sum over time slices of the active
    rows' readout currents, each slice a nodal analysis with the idle rows' cells off. With
    every width equal it is the one-matrix model's; with mixed widths the one-matrix model
    (idle rows' cells on, at 0 V) is off by a visible amount; no wires: widths @ g."""
    g = cells(6, 5, seed=8)
    w = torch.tensor([[0.5, 0.0, 1.0, 0.25, 0.5, 0.75], [0.6] * 6, [0.0] * 6])
    q = gated_pulse_charge(g, w, 2.0, 3.0, 10.0).numpy()
    ref = np.zeros((3, 5))
    for k in range(3):
        ww, before = w[k].numpy(), 0.0
        for t in sorted(set(ww[ww > 0])):
            on = ww >= t
            ref[k] += (t - before) * nodal_solve(np.where(on[:, None], g.numpy(), 1e-15),
                                                 on[None, :] * 1.0, 2.0, 3.0, 10.0)[0]
            before = t
    assert np.abs(q - ref).max() <= 1e-9 * np.abs(ref).max()
    one = w.numpy() @ effective_conductance(g, 2.0, 3.0, 10.0).numpy()
    np.testing.assert_allclose(one[1:], q[1:], rtol=1e-9, atol=0)
    assert np.abs(one[0] - q[0]).max() > 1e-4 * np.abs(q).max()
    torch.testing.assert_close(gated_pulse_charge(g, w, 0.0, 0.0), w.double() @ g)
    with pytest.raises(UsageError, match=r"pulse widths of shape \(2, 5\)"):
        gated_pulse_charge(g, torch.ones(2, 5), 1.0, 1.0)
    with pytest.raises(UsageError, match=">= 0"):
        gated_pulse_charge(g, -torch.ones(1, 6), 1.0, 1.0)


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
