"""The SET table's meaning, checked against SPICE of a single pulse: a pulse of width tpw
switches the cell when tpw >= t_set(vp, gini) read from the table, and not when it is shorter.
The fixed-pulse deck (tb_set, the one program-and-verify uses) is the witness."""

import numpy as np
import pytest

from cimlut.characterize.deck import Deck
from cimlut.characterize.runner import run
from cimlut.circuits import CELLS
from cimlut.models.table import Table
from cimlut.paths import data_dir


def tb(name):
    return next(t for t in CELLS["rram_1t1r"].testbenches if t.name == name)


@pytest.mark.parametrize("vp, gini", [(1.53, 1.27), (1.71, 1.56)])
def test_a_pulse_switches_when_it_is_longer_than_the_table_says(vp, gini):
    table = Table.load(data_dir() / "tables" / "rram_1t1r.h5", "set", "tt")
    t_set = float(table("t_set", temperature=27.0, vp=vp, gini=gini))
    assert 2e-6 < t_set < 4e-4  # inside tb_set's 1.2 ms window, well above its 2 us step
    gset = next(p.default for p in tb("set_time").params if p.name == "gset")
    gap = {}
    for f in (0.8, 1.25):
        # tb_set's tpw is the flat top; t_set counts from the half rise (5 ns into it)
        res = run(tb("set").deck().with_(params={"vp": vp, "gini": gini, "tpw": f * t_set}))
        gap[f] = res.measures["gap_end"]
    assert gap[0.8] > gset + 0.1, gap     # still creeping: not switched
    assert gap[1.25] < gset - 0.1, gap    # the runaway happened


def test_an_unswitched_cell_is_a_failed_crossing_not_a_number():
    """Below the grid (1.2 V from the HRS) nothing switches in the 10 s window: the deck's
    crossing measure fails, rather than reporting the window's end as a time."""
    res = run(tb("set_time").deck().with_(params={"vp": 1.2, "gini": 1.7}))
    assert np.isnan(res.measures.get("t_set", np.nan))
