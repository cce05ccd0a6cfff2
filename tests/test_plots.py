from datetime import datetime

import numpy as np

from s2v_core.views.plots import (
    STAGE_COLORS,
    confusion_figure,
    hypnodensity_figure,
    hypnogram_figure,
    time_axis,
)


def test_hypnogram_levels_and_disagreement():
    ref = np.array([0, 0, 1, 2, 3, 4, -1])
    pred = np.array([0, 1, 1, 2, 3, 4, 2])
    fig = hypnogram_figure({"expert": ref, "predicted": pred}, start=datetime(2024, 1, 1, 23, 0))
    expert = fig.data[0]
    # W plotted on top (4), REM next (3), N3 at the bottom (0); unscored is a gap
    assert list(expert.y[:6]) == [4, 4, 2, 1, 0, 3] and np.isnan(expert.y[6])
    rem = fig.data[1]
    assert rem.line.color == STAGE_COLORS["REM"] and rem.line.width > expert.line.width
    strip = [t for t in fig.data if t.name == "disagreement"][0]
    assert np.isfinite(strip.y).sum() == 1  # only epoch 1 differs among scored epochs
    assert fig.data[0].x[1] == datetime(2024, 1, 1, 23, 0, 30)


def test_time_axis_without_start_is_hours():
    x, label = time_axis(3, None)
    assert label == "hours since start" and x[2] == 60 / 3600


def test_hypnodensity_stacks_to_one():
    p = np.full((4, 5), 0.2)
    fig = hypnodensity_figure(p)
    assert len(fig.data) == 5 and np.allclose(sum(np.asarray(t.y) for t in fig.data), 1.0)


def test_confusion_percentages():
    fig = confusion_figure(np.array([[3, 1], [0, 4]]), ("W", "REM"))
    assert fig.data[0].z[0][0] == 75.0 and fig.data[0].text[0][1] == "25%<br>1"
