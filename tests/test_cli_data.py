"""``python -m covid_lib data ...``: choices in step with the data layer, help texts, table width,
and bad images reported by ``data summary``."""

from __future__ import annotations

import argparse

from covid_lib.cli import main
from covid_lib.cli import data as cli_data
from covid_lib.data import COMPOSITIONS, SOURCES
from covid_lib.data.download import REGISTRY
from test_bad_inputs import truncate, write_source


def test_cli_choices_match_the_data_layer():
    assert cli_data.SOURCE_NAMES == tuple(SOURCES) == tuple(REGISTRY)
    assert cli_data.COMPOSITION_NAMES == tuple(COMPOSITIONS)


def _data_parsers() -> dict[str, argparse.ArgumentParser]:
    root = argparse.ArgumentParser()
    cli_data.register_cli(root.add_subparsers())
    group = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction)).choices["data"]
    return next(a for a in group._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_option_has_plain_help():
    parsers = _data_parsers()
    assert set(parsers) == {"summary", "compose", "audit", "download"}
    for name, parser in parsers.items():
        for action in parser._actions:
            assert action.help, f"data {name} {action.dest}: no help text"
            assert "``" not in action.help, f"data {name} {action.dest}: RST markup in help"


def test_tables_fit_the_terminal():
    header = ["source", "images", "other labels", "why"]
    rows = [["kermany", 960, "pneumonia 0:320/1:640; kermany_class bacteria:320/normal:320/virus:320; "
             "kermany_split test:240/train:720", "word " * 60],
            ["CORDA&COVID-ChestXRay", 12, "-", "x" * 300]]
    text = cli_data.format_table(header, rows, width=120)
    assert max(len(line) for line in text.splitlines()) <= 120
    flat = " ".join(text.split())
    for word in ("kermany_split", "CORDA&COVID-", "960", "why", "other"):
        assert word in flat
    assert text.count("x") == 300  # long words are broken, never dropped


def test_summary_reports_a_truncated_png_as_an_exclusion(tmp_path, capsys):
    folder = write_source(tmp_path, "montgomery")
    write_source(tmp_path, "kermany")
    truncate(folder / "images" / "img1.png")
    assert main(["data", "summary", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 120
    excluded = out.split("exclusions:")[1]
    assert "montgomery" in excluded and "unreadable image images/img1.png" in excluded
    assert "truncated" in " ".join(excluded.split())
    assert "not found: cohen, hannover, nih, shenzhen" in out


def test_missing_data_root_names_every_way_to_give_it(tmp_path, capsys):
    assert main(["data", "summary", "--data-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "--data-root" in err and "data_root=" in err and "COVID_LIB_DATA" in err
