"""helpers.plots: what a reader sees on the count chart's axis."""
from __future__ import annotations

import pandas as pd

from helpers import plots


def test_count_bars_are_in_natural_order_and_labels_end_under_their_bars():
    frame = pd.DataFrame({"part": ["part_10", "part_2", "part_1", "part_2"], "label": ["REAL", "FAKE", "FAKE", "REAL"]})
    ax = plots.counts_by(frame, "part").axes[0]
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == ["part_1", "part_2", "part_10"]
    assert {t.get_ha() for t in labels} == {"right"}
    assert plots.natural_key("a_2") < plots.natural_key("a_10") and plots.natural_key("b") > plots.natural_key("a_10")
