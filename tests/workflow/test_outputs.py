"""The smoke workflow's tables, figures and report (config/smoke.yaml, run once: conftest.smoke): every
file the workflow promises exists and is well formed. The tables' columns are the analysis's business;
these tests read only their `method` column."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT
from PIL import Image

from .conftest import Smoke

STUDIES = list(yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())["studies"])
MAIN_TABLES = ["final_metric.csv", "communication.csv", "cost.csv"]
STUDY_TABLES = ["final_metric.csv", "communication.csv"]


def files(root: Path, pattern: str) -> list[Path]:
    found = sorted(root.glob(pattern))
    assert found, f"nothing matches {root}/{pattern}"
    return found


@pytest.mark.parametrize("name", MAIN_TABLES)
def test_the_main_tables_have_a_row_for_every_method(smoke: Smoke, name: str) -> None:
    table = pd.read_csv(smoke.results / "tables" / name)
    assert set(table["method"]) == smoke.methods("main")


@pytest.mark.parametrize("study", STUDIES)
@pytest.mark.parametrize("name", STUDY_TABLES)
def test_each_study_table_has_a_row_per_method_of_its_study(smoke: Smoke, study: str, name: str) -> None:
    table = pd.read_csv(smoke.results / "tables" / study / name)
    assert set(table["method"]) == smoke.methods(study)


def test_every_csv_table_has_a_header_and_rows(smoke: Smoke) -> None:
    for path in files(smoke.results / "tables", "**/*.csv"):
        table = pd.read_csv(path)
        assert len(table) > 0 and len(table.columns) > 1, path
        assert not any(str(c).startswith("Unnamed") for c in table.columns), path


def test_every_markdown_table_has_a_header_a_rule_and_rows(smoke: Smoke) -> None:
    for path in files(smoke.results / "tables", "**/*.md"):
        lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
        assert len(lines) >= 3, path
        assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[1].replace(" ", "")), (path, lines[1])
        cells = {line.count("|") for line in lines}
        assert len(cells) == 1, (path, cells)  # every row as wide as the header


def test_the_latex_table_is_one_tabular(smoke: Smoke) -> None:
    text = (smoke.results / "tables" / "final_metric.tex").read_text()
    assert text.count("\\begin{tabular}") == 1 and text.count("\\end{tabular}") == 1
    assert text.index("\\begin{tabular}") < text.index("\\end{tabular}")


def test_every_figure_is_a_readable_image_beside_its_pdf(smoke: Smoke) -> None:
    pngs = files(smoke.figures, "**/*.png")
    for png in pngs:
        with Image.open(png) as image:
            image.verify()  # a PNG that decodes: no truncated or empty file
        with Image.open(png) as image:
            assert min(image.size) >= 200, (png, image.size)
        pdf = png.with_suffix(".pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-1024:], png.with_suffix(".pdf")


def test_the_main_study_and_every_study_have_their_figures(smoke: Smoke) -> None:
    drawn = {p.parent.name for p in smoke.figures.glob("*/*.png")}
    assert drawn == set(STUDIES)
    assert list(smoke.figures.glob("*.png")), "no main-study figure"


def test_the_report_embeds_every_figure(smoke_report: Path, smoke: Smoke) -> None:
    html = smoke_report.read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    for png in files(smoke.figures, "**/*.png"):
        assert png.name in html, png
