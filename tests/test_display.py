"""helpers.display: tables shaped for reading (few columns, relative paths, a sentence above, empty explained)."""
from __future__ import annotations

import pandas as pd
import pytest

from helpers import display
from helpers.notebook import project_root

ROOT = project_root()


def test_relative_path_inside_the_project_outside_it_and_relative():
    assert display.relative_path(ROOT / "data" / "interim" / "x.csv") == "data/interim/x.csv"
    # a test's temporary copy of the layout: shown from its first layout folder
    assert display.relative_path("/tmp/pytest-1/tiny0/data/interim/02_faces/faces/a.jpg") == \
        "data/interim/02_faces/faces/a.jpg"
    assert display.relative_path("/opt/elsewhere/deep/file.txt") == "…/deep/file.txt"
    assert display.relative_path("data/demo/videos") == "data/demo/videos"


@pytest.mark.parametrize("value, absolute", [
    ("/tmp/a/b.jpg", True), ("see /home/me/data/x.csv for more", True), ("data/interim/x.csv", False),
    ("val / test", False), ("1/2", False), ("…/deep/file.txt", False), (0.5, False), (None, False),
])
def test_is_absolute_path(value, absolute):
    assert display.is_absolute_path(value) is absolute


def wide_frame(rows: int = 30, columns: int = 20) -> pd.DataFrame:
    data = {f"c{i}": [float(r) / 7 for r in range(rows)] for i in range(columns)}
    data["face_path"] = [f"/tmp/x/data/interim/02_faces/faces/{r}.jpg" for r in range(rows)]
    return pd.DataFrame(data)


def test_table_keeps_the_columns_asked_for_with_relative_paths_and_the_sentence_above():
    shown = display.table(wide_frame(), "What the table means.", columns=["c0", "face_path", "absent"], rows=5)
    page = shown._repr_html_()
    assert page.index("What the table means.") < page.index("<table")
    assert display.widest_table(page) == 2  # the two present columns, no index (a plain range)
    cells = display.table_cells(page)
    assert "data/interim/02_faces/faces/0.jpg" in cells and not any(map(display.is_absolute_path, cells))
    assert "0.143" in cells  # floats at 3 decimals
    assert "First 5 of 30 rows." in page
    assert "What the table means." in repr(shown) and "/tmp/" not in repr(shown)


def test_a_table_is_never_wider_than_the_page():
    page = display.table(wide_frame(), "Too many columns.")._repr_html_()
    assert display.widest_table(page) == display.MAX_COLUMNS
    indexed = display.table(wide_frame().set_index("c0"), "With an index.")._repr_html_()
    assert display.widest_table(indexed) == display.MAX_COLUMNS


def test_an_empty_table_shows_what_empty_means_instead_of_an_empty_grid():
    empty = pd.DataFrame(columns=["part", "video_id", "reason"])
    shown = display.table(empty, "Skipped videos:", empty="No video was skipped: the good outcome.")
    page = shown._repr_html_()
    assert shown.is_empty and "<table" not in page
    assert "Skipped videos:" in page and "No video was skipped: the good outcome." in page
    assert "Empty DataFrame" not in repr(shown)


def test_missing_values_and_lists_read_as_words():
    frame = pd.DataFrame({"a": [None, float("nan"), pd.NA], "b": [[], ["x", "y"], {"k": 1}]}, dtype=object)
    cells = display.table_cells(display.table(frame)._repr_html_())
    assert "<NA>" not in cells and "nan" not in cells and "None" not in cells
    assert cells.count(display.MISSING_TEXT) == 3
    assert "(none)" in cells and "x, y" in cells and "k: 1" in cells


def test_settings_shows_a_nested_mapping_as_rows_not_json():
    audit = {"groups_spanning_splits": 0, "fractions": {"requested": {"train": 0.6000000000000001, "val": 0.2}},
             "warnings": [], "unit": None, "path": "/tmp/x/data/interim/03_split/split.csv"}
    shown = display.settings(audit, "The checks:", names={"unit": "what balancing counts in"})
    frame = shown.frame
    assert list(frame.index) == ["groups_spanning_splits", "fractions · requested · train",
                                 "fractions · requested · val", "warnings", "unit", "path"]
    assert frame.loc["fractions · requested · train", "value"] == "0.6"
    assert frame.loc["warnings", "value"] == "(none)" and frame.loc["unit", "value"] == display.MISSING_TEXT
    assert frame.loc["unit", "meaning"] == "what balancing counts in"
    assert frame.loc["path", "value"] == "data/interim/03_split/split.csv"
    assert "{" not in shown._repr_html_()
    assert list(display.settings({"face_size": 128}, upper=True).frame.index) == ["FACE_SIZE"]


def test_widest_table_counts_colspans():
    page = ("<table><thead><tr><th colspan='3'>a</th><th>b</th></tr></thead>"
            "<tbody><tr><td>1</td><td>2</td></tr></tbody></table><table><tr><td colspan=\"5\">x</td></tr></table>")
    assert display.widest_table(page) == 5


def test_with_intervals_merges_value_lo_hi():
    frame = pd.DataFrame({"model": ["m"], "auc_diff": [-0.0843], "auc_diff_lo": [-0.2], "auc_diff_hi": [0.01],
                          "n": [96]})
    merged = display.with_intervals(frame, ["auc_diff", "absent"])
    assert list(merged.columns) == ["model", "auc_diff", "n"]
    assert merged.auc_diff.iloc[0] == "-0.084 [-0.200, 0.010]"


def test_choices_reads_a_runs_metrics_without_raw_dicts():
    metrics = {"threshold": {"value": 0.849, "chosen_on": "val", "rule": "max validation balanced_accuracy"},
               "calibration": {"method": "platt", "fitted_on": "val", "slope": 1.91, "intercept": 1.86,
                               "temperature": 99.99, "ece_before": 0.36, "ece_platt": 0.11,
                               "log_loss_before": 0.74, "log_loss_platt": 0.45, "log_loss_temperature": 0.69},
               "evaluated_on": "eval.csv: every face of the held-out videos' evaluation frames"}
    shown = display.choices(metrics)
    page = shown._repr_html_()
    assert "0.849" in page and "slope 1.910, intercept 1.860" in page and "0.740 raw, 0.450 after Platt" in page
    assert "{" not in page and "None" not in page
    assert display.choices({"evaluated_on": "x"}).frame.loc["decision threshold", "value"] == display.MISSING_TEXT


def test_a_cut_table_keeps_its_total_row():
    frame = pd.DataFrame({"videos": range(30)}, index=[f"part_{i}" for i in range(29)] + ["total"])
    shown = display.table(frame, "Per part:", rows=10)
    assert list(shown.frame.index) == [f"part_{i}" for i in range(9)] + ["total"]
    assert "First 10 of 30 rows." in shown._repr_html_()


def test_the_report_cuts_long_tables_and_keeps_the_total():
    from helpers import report

    rows = "".join(f"<tr><th>p{i}</th><td>{i}</td></tr>" for i in range(20)) + "<tr><th>total</th><td>190</td></tr>"
    cut = report.TBODY.sub(report.shorten_tbody, f"<table><tbody>{rows}</tbody></table>")
    assert cut.count("<tr") == report.MAX_TABLE_ROWS + 1
    assert cut.endswith("<tr><th>total</th><td>190</td></tr></tbody></table>")
    assert f"… {21 - report.MAX_TABLE_ROWS} more rows" in cut
    short = "<table><tbody><tr><td>1</td></tr></tbody></table>"
    assert report.TBODY.sub(report.shorten_tbody, short) == short
