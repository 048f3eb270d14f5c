import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from raddino_lib.viz.probes import (  # noqa: E402
    plot_dice_bars,
    plot_label_metric,
    plot_metric_table,
    plot_segmentation_overlays,
)


def _per_label(v):
    return pd.DataFrame({"finding": ["A", "B"], "auroc": [v, v + 0.1], "auroc_ci_low": [v - 0.1, v],
                         "auroc_ci_high": [v + 0.1, v + 0.2]})


def test_per_label_chart_has_one_bar_per_encoder_and_finding_with_error_bars():
    fig = plot_label_metric({"ssl": _per_label(0.8), "random": _per_label(0.5)})
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [0.5, 0.6, 0.8, 0.9]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B"]
    assert sum(type(c).__name__ == "ErrorbarContainer" for c in ax.containers) == 2  # one per encoder


def test_metric_table_prints_value_and_interval():
    cell = {"value": 0.81, "ci_low": 0.7, "ci_high": 0.9}
    fig = plot_metric_table({"ssl": {"auroc": cell}, "random": {"auroc": {"value": 0.5, "ci_low": None,
                                                                         "ci_high": None}}})
    texts = [c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()]
    assert "0.810 [0.700, 0.900]" in texts and "0.500" in texts


def test_dice_bars_and_overlays_draw():
    table = pd.DataFrame({"structure": ["lung"], "dice": [0.9], "dice_ci_low": [0.8], "dice_ci_high": [0.95]})
    assert plot_dice_bars({"ssl": table, "random": table}).axes[0].patches
    truth = np.zeros((2, 1, 16, 16))
    truth[:, 0, 4:12, 4:12] = 1
    fig = plot_segmentation_overlays(np.random.rand(2, 16, 16), truth, {"ssl": truth * 0.9, "random": truth * 0.2},
                                     ["lung"])
    assert len(fig.axes) == 4
    assert len(fig.axes[0].collections) == 2 and len(fig.axes[1].collections) == 1  # random predicts nothing
