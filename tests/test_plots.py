"""helpers.plots: what a reader sees (the count axis, the confusion cells, the crop study's bars and intervals)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from helpers import plots


def test_count_bars_are_in_natural_order_and_labels_end_under_their_bars():
    frame = pd.DataFrame({"part": ["part_10", "part_2", "part_1", "part_2"], "label": ["REAL", "FAKE", "FAKE", "REAL"]})
    ax = plots.counts_by(frame, "part").axes[0]
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == ["part_1", "part_2", "part_10"]
    assert {t.get_ha() for t in labels} == {"right"}
    assert plots.natural_key("a_2") < plots.natural_key("a_10") and plots.natural_key("b") > plots.natural_key("a_10")


def test_confusion_matrix_is_annotated_with_counts_and_row_shares():
    table = pd.DataFrame([[8, 2], [1, 9]], index=["REAL", "FAKE"], columns=["REAL", "FAKE"])
    fig = plots.confusion_matrix(table, title="test faces")
    (ax,) = fig.axes  # no colour bar: the cells say their share
    assert [t.get_text() for t in ax.texts] == ["8\n80%", "2\n20%", "1\n10%", "9\n90%"]
    # white text on the darker cells (share above one half), black on the lighter ones
    assert [t.get_color() for t in ax.texts] == ["white", "black", "black", "white"]
    assert np.allclose(ax.collections[0].get_array().reshape(2, 2), [[0.8, 0.2], [0.1, 0.9]])
    # each annotation sits in its own cell, row 0 at the top
    assert [t.get_position() for t in ax.texts] == [(0.5, 0.5), (1.5, 0.5), (0.5, 1.5), (1.5, 1.5)]
    assert ax.yaxis_inverted()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["REAL", "FAKE"] and list(ax.get_xticks()) == [0.5, 1.5]
    assert [(t.get_text(), t.get_rotation()) for t in ax.get_yticklabels()] == [("REAL", 0), ("FAKE", 0)]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted", "true", "test faces")
    plots.plt.close(fig)


def crop_table() -> pd.DataFrame:
    """Two models x two variants with their intervals; VGG19 has no AUC on the cropped variant."""
    table = pd.DataFrame({"Model": ["MesoNet (Meso4)", "VGG19"],
                          "accuracy_full": [0.9, 0.7], "accuracy_full_lo": [0.8, 0.6], "accuracy_full_hi": [0.95, 0.8],
                          "accuracy_eyes_lower": [0.6, 0.65], "accuracy_eyes_lower_lo": [0.5, 0.55],
                          "accuracy_eyes_lower_hi": [0.7, 0.75],
                          "auc_full": [0.95, 0.8], "auc_full_lo": [0.9, 0.7], "auc_full_hi": [0.99, 0.9],
                          "auc_eyes_lower": [0.7, np.nan], "auc_eyes_lower_lo": [0.6, np.nan],
                          "auc_eyes_lower_hi": [0.8, np.nan]})
    table.attrs["variants"] = ["full", "eyes_lower"]
    return table


def error_segments(ax) -> list[tuple[float, float, float]]:
    """(x, low end, high end) of every error bar drawn on `ax`."""
    from matplotlib.container import ErrorbarContainer  # noqa: PLC0415

    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    return [(float(s[0, 0]), float(s[0, 1]), float(s[1, 1])) for s in bars.lines[2][0].get_segments()]


def test_crop_study_bars_put_each_interval_on_its_own_bar():
    table = crop_table()
    fig = plots.crop_study_bars(table, title="crop study")
    accuracy, auc = fig.axes[:2]
    for ax, metric, missing in ((accuracy, "accuracy", set()), (auc, "auc", {("eyes_lower", 1)})):
        expected = {}  # bar centre -> (height, interval)
        for i, variant in enumerate(("full", "eyes_lower")):
            for row in range(2):
                if (variant, row) not in missing:
                    c = f"{metric}_{variant}"
                    expected[round(row + (i - 0.5) * 0.4, 6)] = (table[c][row], table[f"{c}_lo"][row],
                                                                 table[f"{c}_hi"][row])
        bars = {round(p.get_x() + p.get_width() / 2, 6): p for p in ax.patches}
        assert set(bars) == set(expected), "one bar per model and variant with a value, dodged side by side"
        assert all(abs(p.get_width() - 0.4) < 1e-9 for p in bars.values())
        assert {x: round(p.get_height(), 6) for x, p in bars.items()} == {x: v[0] for x, v in expected.items()}
        segments = {round(x, 6): (round(lo, 6), round(hi, 6)) for x, lo, hi in error_segments(ax)}
        assert segments == {x: (lo, hi) for x, (_, lo, hi) in expected.items()}, "each interval on its bar's centre"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["MesoNet (Meso4)", "VGG19"]
        assert ax.get_legend() is None and ax.get_xlabel() == ""
        # the same variant has the same colour in both panels: the variant at the left of each pair is "full"
        colours = {round(x, 6): p.get_facecolor() for x, p in bars.items()}
        assert colours[-0.2] == colours[0.8] and colours[-0.2] != colours[0.2]
    assert accuracy.patches[0].get_facecolor() == auc.patches[0].get_facecolor()
    assert (accuracy.get_title(), auc.get_title(), auc.get_ylabel()) == ("Accuracy", "AUC", "AUC")
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["full face", "eyes + lower face"]
    assert fig._suptitle.get_text() == "crop study"
    plots.plt.close(fig)


def test_crop_study_bars_keep_a_slot_for_a_variant_without_columns():
    table = crop_table().drop(columns=[c for c in crop_table().columns if c.startswith("accuracy_full")])
    fig = plots.crop_study_bars(table, metrics=("accuracy",))
    (ax,) = fig.axes
    # the missing variant's slot stays empty, so "eyes + lower face" stays right of centre as in the AUC panel
    assert sorted(round(p.get_x() + p.get_width() / 2, 6) for p in ax.patches) == [0.2, 1.2]
    assert sorted(round(x, 6) for x, _, _ in error_segments(ax)) == [0.2, 1.2]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["eyes + lower face"]
    plots.plt.close(fig)
