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
    # ngspice 46 (bookworm-backports), seen running every testbench on both backends
    "Note: Transient op started",
    "Note: Transient op finished successfully",
    "Using KLU as Direct Linear Solver",
    "Reset re-loads circuit * tb_hold -- retention of the 2t gain cell",
    "Any of the following steps may fail.!",
    "Warning from checkvalid: vector a is not available or has zero length.",
    "Error during 'write': no writable vector found.",
    "Error: ngspice.dll cannot recover and awaits to be reset or detached",
    "run simulation(s) aborted",
])
def test_notes_are_not_errors(line):
    assert classify(line).kind == "note"


@pytest.mark.parametrize("line", [
    "Error: unknown subckt: x1 d g 0 nfxx",
    "Error: Could not find library file ../models/sky130/x.lib.spice",
    'Closing "}" not found.',
    "ERROR: fatal error in ngspice, exit(1)",
    # ngspice 46
    'Closing "}" not found in line fragment',
    "Undefined parameter [vx]",
    "Error: no such function 'nosuchfn' at line 3",
    "Error: incomplete or empty netlist",
    "Error: Could not find include file /tmp/x/nothere.inc",
    # an element line without its value: 39 made it 1 mOhm, 46 drops it; both run on
    "Warning: r1: resistance to low, set to 1 mOhm",
    "Warning: 'r1 a 0' is not a valid resistor instance line, ignored!",
    "Warning: 'c1 a 0' is not a valid capacitor instance line, ignored!",
])
def test_errors(line):
    assert classify(line).kind == "error"


@pytest.mark.parametrize("line", [
    "doAnalyses: TRAN:  Timestep too small; time = 1e-09, timestep = 1.25e-22: trouble with node",
    "Transient solution failed -",
    "Warning: gmin stepping failed",
    "Error: Transient op failed, timestep too small",
    # ngspice 46 calls a failed operating point an error
    "Error: The operating point could not be simulated successfully.",
    "Error: Finding the operating point for transient simulation failed",
])
def test_convergence(line):
    assert classify(line).kind == "convergence"


def test_line_number():
    assert netlist_line_no(["Circuit: x", "Netlist line no. 12:", "bad"]) == 12


def test_line_number_ngspice_46():
    # the first number counts the lines of included files (2222 after a .lib); the deck's
    # line is the internal one
    assert netlist_line_no(["Error in netlist line no. 2222, new internal line no. 6:",
                            'Closing "}" not found in line fragment']) == 6
    assert netlist_line_no(["Error: not enough parameters in line", "   e1 c 0 a",
                            "    line no 6, file el.cir"]) == 6
