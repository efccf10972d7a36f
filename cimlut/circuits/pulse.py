"""Charge-to-pulse readout: integrated bit-line charge -> pulse width, saturating at T_max,
the HardSigmoid that replaces softmax (Leroux et al., arXiv 2409.19315)."""

from .base import Cell, Measure, Param, Port, Signal, Testbench

CELL = "charge_to_pulse"

TESTBENCHES = (
    Testbench(
        CELL, "transfer", "tb_transfer.cir", "pulse width vs input charge, through saturation",
        signals=(Signal("v(int)", "V", "integrating node"), Signal("v(out)", "V", "output pulse"),
                 Signal("i(vref)", "A", "reset reference current")),
        measures=(Measure("ton", "s", "first rise through vdd/2 of max(output, pilot)"),
                  Measure("toff", "s", "first fall through vdd/2 of max(output, pilot)"),
                  Measure("tpulse", "s", "output pulse width between its vdd/2 crossings; 0 "
                                         "when the output never crosses vdd/2 in the window"),
                  Measure("vint_peak", "V", "integrating node after the input"),
                  Measure("isink", "A", "sink current at rest, its input near the reset level"),
                  Measure("prest", "W", "supplies' power at rest (bias branches, steered sink)"),
                  Measure("ecyc", "J", "supplies' energy over one cycle, rest to rest"),
                  Measure("econv", "J", "energy per conversion: the cycle's energy with the "
                                        "static power counted over tmax only")),
        params=(Param("qin", 60e-15, "C", "input charge"),
                Param("tin", 3e-9, "s", "time over which the input charge arrives"),
                Param("tmax", 15e-9, "s", "conversion window = saturation width"),
                Param("tdis", 6e-9, "s", "start of the conversion window"),
                Param("vdd", 1.8, "V", "supply and logic high"),
                Param("vrefv", 0.7, "V", "reset level (the sink's input stays above ~0.6 V)")),
        transfer=("qin", tuple(q * 1e-15 for q in (0, 10, 20, 40, 60, 80, 100, 110, 120,
                                                   140, 200)), "tpulse"),
    ),
)

CHARGE_TO_PULSE = Cell(
    CELL, "charge_to_pulse", "charge_to_pulse.inc",
    "integrating C, sky130 wide-swing cascode current-mirror sink with current-steering "
    "switches, behavioural comparator with gain, output pole and hysteresis",
    "N. Leroux et al., arXiv 2409.19315 (2024/25), charge-to-pulse HardSigmoid readout",
    ports=(Port("int", "integrating node (column bit line)"), Port("out", "output pulse"),
           Port("en", "conversion window"), Port("rst", "reset"),
           Port("vref", "reset level = comparator threshold"), Port("vdd", "supply")),
    params=(Param("cint", 200e-15, "F", "integrating capacitance"),
            Param("ibias", 10e-6, "A", "sink current (mirror reference)")),
    testbenches=TESTBENCHES,
)
