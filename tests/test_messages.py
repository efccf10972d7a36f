"""ngspice >= 42 prints notes on stderr; PySpice 1.5 calls every stderr line an error.
cimlut judges lines by what they say."""

import pytest

from cimlut.characterize.messages import classify, netlist_line_no


@pytest.mark.parametrize("line", [
    "Note: No compatibility mode selected!",
    "Note: Compatibility modes selected: hs a",
    "Using SPARSE 1.3 as Direct Linear Solver",
    "Warning: Further gmin increment",
    "Doing analysis at TEMP = 27.000000 and TNOM = 27.000000",
    "Unsupported Ngspice version 39",
    "option SCALE: Scale is set to 1e-06 for instance and model parameters",
    "Note: can't find the initialization file spinit.",
    "ngspice-46 done",
])
def test_notes_are_not_errors(line):
    assert classify(line).kind == "note"


@pytest.mark.parametrize("line", [
    "Error: unknown subckt: x1 d g 0 nfxx",
    "Error: Could not find library file ../models/sky130/x.lib.spice",
    'Closing "}" not found.',
    "ERROR: fatal error in ngspice, exit(1)",
])
def test_errors(line):
    assert classify(line).kind == "error"


@pytest.mark.parametrize("line", [
    "doAnalyses: TRAN:  Timestep too small; time = 1e-09, timestep = 1.25e-22: trouble with node",
    "Transient solution failed -",
    "Warning: gmin stepping failed",
    "Error: Transient op failed, timestep too small",
])
def test_convergence(line):
    assert classify(line).kind == "convergence"


def test_line_number():
    assert netlist_line_no(["Circuit: x", "Netlist line no. 12:", "bad"]) == 12
