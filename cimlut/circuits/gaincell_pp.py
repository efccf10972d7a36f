"""Push-pull gain cell: a gain cell that multiplies. Written through a transmission gate (so
the stored voltage spans nearly rail to rail), read through a complementary nFET/pFET pair
whose gates are the storage node, into a bit line held at VDD/2: the column charge is signed
about the mid-level and close to linear in the stored voltage, so no reference column is
needed. The deck header (`netlists/gaincell_pp/gaincell_pp.inc`) gives the physics, sizing
and sources."""

from .base import Cell, Measure, Param, Port, Signal, StorageLevels, Testbench

CELL = "gaincell_pp"

DEVICE = (
    Param("cs", 2e-15, "F", "storage capacitance (explicit; the read gates add ~14 fF)"),
    Param("wwn", 0.42, "um", "write nFET width"),
    Param("lwn", 0.15, "um", "write nFET length"),
    Param("wwp", 0.42, "um", "write pFET width"),
    Param("lwp", 0.15, "um", "write pFET length"),
    Param("wrn", 0.42, "um", "read nFET width"),
    Param("lrn", 2.0, "um", "read nFET length"),
    Param("wrp", 0.5, "um", "read pFET (low-Vt) width"),
    Param("lrp", 1.72, "um", "read pFET (low-Vt) length"),
)
SN = Signal("v(sn)", "V", "storage node")
SUPPLY = (Param("vdd", 1.8, "V", "supply: word-line high level and n-well bias"),
          Param("vmid", 0.9, "V", "mid-level VDD/2: read bit line and idle read word lines"))

TESTBENCHES = (
    Testbench(
        CELL, "write", "tb_write.cir", "write: stored voltage vs write bit-line voltage",
        signals=(Signal("v(wwl)", "V", "write word line"), SN,
                 Signal("i(vwbl)", "A", "write bit-line driver current"),
                 Signal("i(vwwl)", "A", "write word-line driver current")),
        measures=(Measure("vstored", "V", "storage voltage after the write settles"),
                  Measure("vpeak", "V", "highest storage voltage during the write"),
                  Measure("qwl", "C", "charge wwl's driver delivers while wwl rises and is high"),
                  Measure("qwlb", "C", "charge wwlb's driver delivers while wwlb rises back"),
                  Measure("qbl", "C", "net charge the bit-line driver delivers over the write"),
                  Measure("qdd", "C", "net charge the n-well supply delivers over the write"),
                  Measure("ewrite", "J", "energy from the supplies: vdd (qwl + qwlb + max(qbl, 0) "
                          "+ max(qdd, 0))")),
        params=(Param("vwrite", 1.35, "V", "write bit-line voltage"),
                Param("vprev", 0.9, "V", "storage voltage before the write"),
                *SUPPLY,
                Param("tw", 10e-9, "s", "write pulse width"),
                Param("ted", 100e-12, "s", "word-line edge time")),
    ),
    Testbench(
        CELL, "hold", "tb_hold.cir", "retention: storage voltage over 2 ms with the gate off",
        signals=(SN,),
        measures=(Measure("v10u", "V", "storage voltage after 10 us"),
                  Measure("v100u", "V", "storage voltage after 100 us"),
                  Measure("v1m", "V", "storage voltage after 1 ms"),
                  Measure("v2m", "V", "storage voltage after 2 ms")),
        params=(Param("vinit", 0.45, "V", "storage voltage at the start of the hold"),
                Param("vwbl", 0.9, "V", "write bit line during the hold (parked at mid-level)"),
                *SUPPLY),
    ),
    Testbench(
        CELL, "read", "tb_read.cir", "multiply: signed read charge vs stored voltage and pulse width",
        signals=(Signal("v(rwlp)", "V", "read word line, pull-up side (input pulse)"),
                 Signal("v(rwln)", "V", "read word line, pull-down side (input pulse)"), SN,
                 Signal("i(vrbl)", "A", "read bit-line current")),
        measures=(Measure("qread", "C", "signed charge drawn from the column"),
                  Measure("qwp", "C", "charge rwlp's driver delivers while rwlp rises and is high"),
                  Measure("qwn", "C", "charge rwln's driver delivers while rwln rises back"),
                  Measure("qdd", "C", "net charge the n-well supply delivers over the read"),
                  Measure("eread", "J", "energy from the supplies: vdd max(qwp, 0) + vmid "
                          "max(qwn, 0) + vmid max(qread, 0) + vdd max(qdd, 0)"),
                  Measure("iread", "A", "column current mid-pulse"),
                  Measure("vsn_kick", "V", "storage node shift mid-pulse (read coupling)")),
        params=(Param("vstore", 1.2, "V", "stored voltage"),
                Param("tpw", 10e-9, "s", "input pulse width"),
                *SUPPLY,
                Param("ted", 100e-12, "s", "read word-line edge time")),
        transfer=("vstore", (0.45, 0.6, 0.75, 0.9, 1.05, 1.2, 1.35), "qread"),
    ),
)

GAINCELL_PP = Cell(
    CELL, "gaincell_pp", "gaincell_pp.inc",
    "push-pull gain cell in sky130: transmission-gate write, complementary read pair, explicit Cs",
    "N. Leroux et al., arXiv 2409.19315 (complementary read pair about VDD/2); B. Nauta, "
    "IEEE JSSC 27(2) 1992 (push-pull square-law linearisation)",
    ports=(Port("wbl", "write bit line"), Port("wwl", "write word line (nFET gate)"),
           Port("wwlb", "complementary write word line (pFET gate)"),
           Port("rbl", "read bit line (held at vmid by the column integrator)"),
           Port("rwlp", "read word line, pull-up side: vmid -> vdd for the input pulse"),
           Port("rwln", "read word line, pull-down side: vmid -> 0 V for the input pulse"),
           Port("sn", "storage node"), Port("vdd", "n-well bias of the pFETs")),
    params=DEVICE,
    testbenches=TESTBENCHES,
    levels=StorageLevels(0.45, 1.35, 0.9, "push_pull",
                         "0.9 +/- 0.45 V: the read pair's near-linear span about VDD/2"),
)
