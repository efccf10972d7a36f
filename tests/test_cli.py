import json

from cimlut.circuits import testbenches as all_testbenches
from cimlut.cli import main


def test_survey_writes_summary_and_plots(tmp_path, capsys):
    assert main(["survey", "--out", str(tmp_path), "--jobs", "2"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["testbenches"]) == {tb.id for tb in all_testbenches()}
    for tid, entry in summary["testbenches"].items():
        assert "error" not in entry, entry
        assert (tmp_path / entry["plot"]).stat().st_size > 10_000
    assert (tmp_path / "rram_1t1r.iv.xy.png").exists()
    tr = summary["testbenches"]["charge_to_pulse.transfer"]["transfer"]["points"]
    assert tr[-1][1] > tr[1][1] > 0
    assert "charge_to_pulse.transfer" in capsys.readouterr().out


def test_sim_prints_measures_and_bad_param_is_a_clear_error(capsys, decks):
    assert main(["sim", str(decks / "nfet_dc.cir"), "--set", "vg=1.2"]) == 0
    assert "ion" in capsys.readouterr().out
    assert main(["sim", str(decks / "nfet_dc.cir"), "--set", "vth=1"]) == 2
    err = capsys.readouterr().err
    assert "nfet_dc.cir" in err and "no top-level .param vth" in err


def test_cells_lists_ports_and_params(capsys):
    assert main(["cells"]) == 0
    out = capsys.readouterr().out
    assert ".param cs" in out and "rram_1t1r" in out and "Guan" in out
