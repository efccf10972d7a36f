"""2T gain cell: the dynamic K and V of attention, written token by token, leaking with time
(Leroux et al. 2024/25, arXiv 2409.19315). Signed products use a reference column at
VDD/2 = 0.45 V: Q(v_sn) - Q(0.45 V), each integrated by its own readout."""

from .base import Cell, Measure, Param, Port, Signal, StorageLevels, Testbench

CELL = "gaincell_2t"

DEVICE = (
    Param("cs", 1e-15, "F", "storage capacitance"),
    Param("ww", 0.42, "um", "write nFET width"),
    Param("lw", 0.15, "um", "write nFET length"),
    Param("wr", 0.42, "um", "read nFET (low-Vt) width"),
    Param("lr", 0.15, "um", "read nFET (low-Vt) length"),
)
SN = Signal("v(sn)", "V", "storage node")

TESTBENCHES = (
    Testbench(
        CELL, "write", "tb_write.cir", "write: stored voltage vs write bit-line voltage",
        signals=(Signal("v(wwl)", "V", "write word line"), SN,
                 Signal("i(vwbl)", "A", "write bit-line driver current"),
                 Signal("i(vwwl)", "A", "write word-line driver current")),
        measures=(Measure("vstored", "V", "storage voltage after the write settles"),
                  Measure("vpeak", "V", "highest storage voltage during the write"),
                  Measure("qwl", "C", "charge the word-line driver delivers while wwl rises and is high"),
                  Measure("qbl", "C", "net charge the bit-line driver delivers over the write"),
                  Measure("ewrite", "J", "energy from the supplies: vwwl qwl + vdd max(qbl, 0)")),
        params=(Param("vwrite", 0.9, "V", "write bit-line voltage"),
                Param("vprev", 0.0, "V", "storage voltage before the write"),
                Param("vwwl", 1.8, "V", "write word-line high level (the driver's supply)"),
                Param("vdd", 1.8, "V", "supply of the bit-line driver"),
                Param("tw", 10e-9, "s", "write pulse width"),
                Param("ted", 100e-12, "s", "word-line edge time")),
    ),
    Testbench(
        CELL, "hold", "tb_hold.cir", "retention: storage voltage over 2 ms with the word line off",
        signals=(SN,),
        measures=(Measure("v10u", "V", "storage voltage after 10 us"),
                  Measure("v100u", "V", "storage voltage after 100 us"),
                  Measure("v1m", "V", "storage voltage after 1 ms"),
                  Measure("v2m", "V", "storage voltage after 2 ms")),
        params=(Param("vinit", 0.67, "V", "storage voltage at the start of the hold"),
                Param("vwbl", 0.0, "V", "write bit line during the hold")),
    ),
    Testbench(
        CELL, "read", "tb_read.cir", "multiply: read charge vs stored voltage and pulse width",
        signals=(Signal("v(rwl)", "V", "read word line (input pulse)"), SN,
                 Signal("i(vrbl)", "A", "read bit-line current")),
        measures=(Measure("qread", "C", "charge delivered to the column"),
                  Measure("qwl", "C", "charge the word-line driver delivers while rwl rises back"),
                  Measure("eread", "J", "energy from the supplies: vrbl (max(qread, 0) + max(qwl, 0))"),
                  Measure("iread", "A", "column current mid-pulse"),
                  Measure("vsn_min", "V", "storage node dip from the read (coupling)")),
        params=(Param("vstore", 0.6, "V", "stored voltage"),
                Param("tpw", 10e-9, "s", "input pulse width"),
                Param("vrbl", 0.9, "V", "read bit-line voltage"),
                Param("ted", 100e-12, "s", "read word-line edge time")),
        transfer=("vstore", (0.0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9), "qread"),
    ),
)

GAINCELL = Cell(
    CELL, "gaincell_2t", "gaincell_2t.inc",
    "2T gain cell in sky130: write nFET, low-Vt read nFET, explicit storage capacitor",
    "N. Leroux et al., arXiv 2409.19315 (2024/25), gain-cell analog attention",
    ports=(Port("wbl", "write bit line"), Port("wwl", "write word line"),
           Port("rbl", "read bit line (held by the column integrator)"),
           Port("rwl", "read word line: pulsed low for the input pulse width"),
           Port("sn", "storage node")),
    params=DEVICE,
    testbenches=TESTBENCHES,
    levels=StorageLevels(0.0, 0.9, 0.45, "reference_column",
                         "Leroux et al.: K/V written in 0-0.9 V, offset VDD/2 = 0.45 V"),
)
