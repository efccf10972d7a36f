"""Charge-to-pulse readout: integrated bit-line charge -> pulse width, saturating at T_max,
the HardSigmoid that replaces softmax (Leroux et al., arXiv 2409.19315)."""

from .base import Cell, Measure, Param, Port, Signal, Testbench

CELL = "charge_to_pulse"

TESTBENCHES = (
    Testbench(
        CELL, "transfer", "tb_transfer.cir", "pulse width vs input charge, through saturation",
        signals=(Signal("v(int)", "V", "integrating node"), Signal("v(out)", "V", "output pulse"),
                 Signal("i(vref)", "A", "reset reference current")),
        measures=(Measure("tpulse", "s", "output pulse width"),
                  Measure("vint_peak", "V", "integrating node after the input"),
                  Measure("econv", "J", "energy per conversion from all real supplies")),
        params=(Param("qin", 60e-15, "C", "input charge"),
                Param("tin", 5e-9, "s", "time over which the input charge arrives"),
                Param("tmax", 15e-9, "s", "conversion window = saturation width"),
                Param("tdis", 10e-9, "s", "start of the conversion window"),
                Param("vdd", 1.8, "V", "supply and logic high"),
                Param("vrefv", 0.3, "V", "reset level and comparator threshold")),
        transfer=("qin", tuple(q * 1e-15 for q in (0, 10, 20, 40, 60, 80, 100, 110, 120,
                                                   140, 200)), "tpulse"),
    ),
)

CHARGE_TO_PULSE = Cell(
    CELL, "charge_to_pulse", "charge_to_pulse.inc",
    "integrating C, sky130 cascoded current-mirror discharge and switch, behavioural comparator",
    "N. Leroux et al., arXiv 2409.19315 (2024/25), charge-to-pulse HardSigmoid readout",
    ports=(Port("int", "integrating node (column bit line)"), Port("out", "output pulse"),
           Port("en", "conversion window"), Port("rst", "reset"),
           Port("vref", "reset level = comparator threshold"), Port("vdd", "supply")),
    params=(Param("cint", 200e-15, "F", "integrating capacitance"),
            Param("ibias", 10e-6, "A", "discharge reference current"),
            Param("vcas", 0.9, "V", "cascode gate voltage")),
    testbenches=TESTBENCHES,
)
