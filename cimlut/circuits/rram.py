"""RRAM 1T1R: HfOx filament-gap memristor (Stanford/ASU model) + sky130 access nFET.

The memristor holds a static weight as a conductance; a crossbar of these cells computes
every nn.Linear (Wang et al. 2024, arXiv 2410.15977).
"""

from .base import Cell, Measure, Param, Port, Signal, Testbench

CELL = "rram_1t1r"

MODEL = (
    Param("i0", 6.14e-5, "A", "current prefactor, I = i0 exp(-g/g0) sinh(V/v0)"),
    Param("g0", 0.275, "nm", "gap decay length"),
    Param("v0", 0.43, "V", "sinh voltage scale"),
    Param("w", 1.0, "um", "access nFET width"),
    Param("l", 0.15, "um", "access nFET length"),
)
DYNAMICS = (
    Param("vel0", 1.5e11, "nm/s", "gap velocity prefactor (150 m/s)"),
    Param("eag", 1.501, "eV", "activation energy, gap shrink (SET)"),
    Param("ear", 1.5, "eV", "activation energy, gap growth (RESET)"),
    Param("gamma0", 16.5, "1", "field enhancement factor at zero gap"),
)

BL = Signal("v(bl)", "V", "bit line")
ICELL = Signal("v(icell)", "A", "cell current bl->sl")
GAP = Signal("v(x1.xr.gap)", "nm", "filament gap")
TEMP = Signal("v(x1.xr.temp)", "K", "filament temperature")
MID = Signal("v(x1.mid)", "V", "memristor bottom / nFET drain")


def _pulse_measures(extreme: Measure) -> tuple[Measure, ...]:
    return (
        Measure("gap_end", "nm", "gap at the end of the pulse"),
        extreme,
        Measure("energy", "J", "energy delivered by the bit line during the pulse"),
        Measure("temp_max", "K", "peak filament temperature"),
        Measure("g_before", "S", "memristor read conductance at vread before the pulse"),
        Measure("g_after", "S", "memristor read conductance at vread after the pulse"),
    )


TESTBENCHES = (
    Testbench(
        CELL, "iv", "tb_iv.cir", "quasi-static I-V loop, SET then RESET",
        signals=(BL, ICELL, GAP, TEMP),
        measures=(
            Measure("imax", "A", "largest cell current (SET branch)"),
            Measure("imin", "A", "most negative cell current (RESET branch)"),
            Measure("ipeak", "A", "peak |cell current|"),
            Measure("gap_set", "nm", "gap at the end of the SET half"),
            Measure("gap_reset", "nm", "gap at the end of the RESET half"),
            Measure("gap_min", "nm", "smallest gap reached"),
            Measure("iread_up", "A", "current at +vread before SET"),
            Measure("iread_dn", "A", "current at +vread after SET"),
            Measure("onoff", "1", "iread_dn / iread_up"),
            Measure("ipinch", "A", "current at +20 mV on the way down"),
            Measure("pinch_ratio", "1", "ipinch / ipeak"),
            Measure("i_v0", "A", "current when the bit line returns to 0 V"),
            Measure("temp_max", "K", "peak filament temperature"),
            Measure("vmid_min", "V", "lowest nFET drain voltage (RESET stress)"),
        ),
        params=(Param("vset", 1.8, "V", "SET peak of the bit line"),
                Param("vreset", 1.6, "V", "RESET peak magnitude (bit line to -vreset)"),
                Param("tramp", 1.0, "s", "duration of each quarter of the triangle"),
                Param("vwl", 1.1, "V", "word line: sets the SET compliance current"),
                Param("vread", 0.2, "V", "voltage where up/down currents are compared"),
                Param("gini", 1.7, "nm", "initial gap (HRS)")) + DYNAMICS,
        xy=("v(bl)", "v(icell)"),
    ),
    Testbench(
        CELL, "read", "tb_read.cir", "read current vs read voltage at a fixed gap",
        signals=(ICELL, MID),
        measures=(Measure("iread", "A", "read current at vread"),
                  Measure("gread", "S", "iread / vread"),
                  Measure("eread", "J", "energy per read: vread * iread * tread"),
                  Measure("vmid_read", "V", "nFET drain voltage at vread"),
                  Measure("gap_read", "nm", "gap (frozen) during the read")),
        params=(Param("gini", 0.15, "nm", "gap held during the sweep"),
                Param("vwl", 1.8, "V", "word line"),
                Param("vread", 0.2, "V", "nominal read voltage"),
                Param("tread", 10e-9, "s", "read pulse width, for the energy per read")),
    ),
    Testbench(
        CELL, "set", "tb_set.cir", "one SET pulse from the high-resistance state",
        signals=(BL, ICELL, GAP, TEMP),
        measures=_pulse_measures(Measure("ipulse_max", "A", "peak cell current"))
        + (Measure("gap_min", "nm", "smallest gap reached"),
           Measure("vmid_max", "V", "highest nFET drain voltage")),
        params=(Param("vp", 1.8, "V", "pulse amplitude on the bit line"),
                Param("tpw", 1e-3, "s", "pulse flat-top width"),
                Param("trise", 10e-9, "s", "rise time"), Param("tfall", 10e-9, "s", "fall time"),
                Param("td", 100e-9, "s", "delay before the pulse"),
                Param("gini", 1.7, "nm", "initial gap (HRS)"),
                Param("vwl", 1.1, "V", "word line (compliance)"),
                Param("vread", 0.2, "V", "read voltage for g_before/g_after")) + DYNAMICS,
    ),
    Testbench(
        CELL, "set_time", "tb_set_time.cir",
        "how long a SET takes: a bit-line step held until the gap falls through gset",
        signals=(BL, ICELL, GAP, TEMP, Signal("v(ebl)", "pJ", "bit-line energy so far")),
        measures=(Measure("t_set", "s", "bit line's half rise to the gap falling through gset"),
                  Measure("e_set", "J", "bit-line energy up to the crossing"),
                  Measure("i_set", "A", "cell current at the crossing"),
                  Measure("temp_set", "K", "filament temperature at the crossing")),
        params=(Param("vp", 1.6, "V", "bit-line amplitude, held for the 10 s window"),
                Param("gini", 1.5, "nm", "initial gap (HRS side)"),
                Param("gset", 0.8, "nm", "gap at which the cell counts as switched"),
                Param("vwl", 1.1, "V", "word line (compliance)"),
                Param("trise", 10e-9, "s", "rise time"),
                Param("td", 100e-9, "s", "delay before the step")) + DYNAMICS,
    ),
    Testbench(
        CELL, "reset", "tb_reset.cir", "one RESET pulse (bit line negative) from the LRS",
        signals=(BL, ICELL, GAP, TEMP, MID),
        measures=_pulse_measures(Measure("ipulse_min", "A", "most negative cell current"))
        + (Measure("gap_max", "nm", "largest gap reached"),
           Measure("vmid_min", "V", "lowest nFET drain voltage")),
        params=(Param("vp", 1.8, "V", "pulse amplitude (bit line to -vp)"),
                Param("tpw", 100e-9, "s", "pulse flat-top width"),
                Param("trise", 5e-9, "s", "rise time"), Param("tfall", 5e-9, "s", "fall time"),
                Param("td", 10e-9, "s", "delay before the pulse"),
                Param("gini", 0.15, "nm", "initial gap (LRS)"),
                Param("vwl", 1.3, "V", "word line"),
                Param("vread", 0.2, "V", "read voltage for g_before/g_after")) + DYNAMICS,
    ),
)

RRAM = Cell(
    CELL, "rram_1t1r", "rram_1t1r.inc",
    "HfOx RRAM (filament-gap model as B-sources) in series with a sky130 nfet_01v8",
    "X. Guan, S. Yu, H.-S. P. Wong, IEEE EDL 33(10) 1405, 2012; Z. Jiang et al., SISPAD 2014",
    ports=(Port("bl", "bit line: memristor top"), Port("wl", "word line: access nFET gate"),
           Port("sl", "source line: access nFET source")),
    params=MODEL,
    testbenches=TESTBENCHES,
)
