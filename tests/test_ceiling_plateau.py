"""The ceiling-plateau experiment: the prevalence-only loss, the escape step, mimetic initialisation, a tiny run end
to end, and the recorded run that notebook 03 shows."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from raddino_lib.experiments import ceiling_plateau as cp
from raddino_lib.train.supervised import findings_base_rate
from raddino_lib.train.supervised_data import base_rate_bce


def test_base_rate_bce_by_hand():
    labels = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0]], dtype=float)
    # column 0: prevalence 1/2 on 4 known labels; column 1: 1/3 on 3 known labels (two 0s, one 1)
    expected = (4 * -math.log(0.5) + 2 * -math.log(2 / 3) + -math.log(1 / 3)) / 7
    assert base_rate_bce(labels) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="no known label"):
        base_rate_bce(np.full((2, 2), np.nan))


def test_escape_step():
    losses = np.r_[np.full(100, 0.3), np.full(50, 0.1)]
    # a window of 50 ending at step 100 + k - 1 holds k values of 0.1: mean < 0.285 from k = 4 on
    assert cp.escape_step(losses, base_rate=0.3) == 103
    assert cp.escape_step(np.full(200, 0.3), base_rate=0.3) is None
    assert cp.escape_step(np.full(20, 0.0), base_rate=0.3) is None  # shorter than the window


def test_mimetic_init_sets_the_products_it_promises():
    from raddino_lib.models.backbone import create_backbone

    torch.manual_seed(0)
    model = create_backbone("vit_tiny", patch_size=8, img_size=32, depth=2)
    cp.mimetic_init(model)
    d = model.embed_dim
    for block in model.blocks:
        w = block.attn.qkv.weight.detach()
        value_path = w[2 * d:].T @ block.attn.proj.weight.detach().T  # W_vᵀ W_oᵀ = 0.4 Z − 0.4 I
        assert torch.diagonal(value_path).mean().item() == pytest.approx(-0.4, abs=0.05)
        off = value_path - torch.diag(torch.diagonal(value_path))
        assert off.std().item() == pytest.approx(0.4 / math.sqrt(d), rel=0.15)
        k = d // block.attn.num_heads
        x = torch.nn.functional.layer_norm(torch.randn(32, d), (d,))
        for h in range(block.attn.num_heads):
            qk = w[h * k:(h + 1) * k].T @ w[d + h * k:d + (h + 1) * k]  # W_q[h]ᵀ W_k[h], rank k
            assert torch.linalg.matrix_rank(qk).item() == k
            logits = x @ qk @ x.T
            assert torch.diagonal(logits).mean() > logits.mean() + 10  # each token attends most to itself
    with torch.no_grad():
        assert torch.isfinite(model.forward_features(torch.randn(2, 3, 32, 32))).all()


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from raddino_lib.data.phantoms import generate

    return generate(tmp_path_factory.mktemp("plateau") / "ph", n=48, size=64, seed=0, balanced=True)


def test_tiny_run_records_every_arm_and_resumes(phantoms, tmp_path, monkeypatch):
    arms = (cp.PlateauArm("cnn", "cnn", steps=26),
            cp.PlateauArm("vit", "vit", steps=26, pooling="cls_mean_max", head_norm="batchnorm"))
    out = tmp_path / "plateau.json"
    records = cp.run_plateau(phantoms, out, arms, workers=1, source="tiny phantoms")
    assert [r["arm"] for r in records] == ["cnn", "vit"] == [r["arm"] for r in cp.load_plateau(out)]
    df = pd.read_csv(phantoms)
    train = df[df["split"] == "train"]
    columns = [c for c in df.columns if c.startswith("label_") and train[c].nunique() == 2]
    expected = base_rate_bce(train[columns].to_numpy(float))  # from the csv, not from the code under test
    assert findings_base_rate(phantoms) == pytest.approx(expected, rel=1e-9)
    for r in records:
        assert r["base_rate_bce"] == pytest.approx(expected, abs=1e-5)
        assert len(r["loss"]) == 1 and np.isfinite(r["loss"]).all()  # 26 steps: one point of 25
        assert r["per_finding"] and all(0 <= v <= 1 for v in r["per_finding"].values())
        assert r["macro_auroc"] == pytest.approx(np.mean(list(r["per_finding"].values())), abs=1e-4)
    floor = cp.load_pixel_floor(out)
    assert floor["per_finding"].keys() == records[0]["per_finding"].keys() and 0 <= floor["macro_auroc"] <= 1

    spread = json.loads(out.read_text())["init_feature_spread"]
    assert spread.keys() == {"cls", "mean_patch"} and all(v > 0 for v in spread.values())

    def refuse(*args, **kwargs):
        raise AssertionError("a recorded arm was run again")

    monkeypatch.setattr(cp, "run_arm", refuse)
    assert cp.run_plateau(phantoms, out, arms, workers=1) == records


def test_init_feature_spread_is_zero_for_one_image_repeated_and_grows_with_the_images_differences():
    torch.manual_seed(1)
    image = torch.rand(1, 1, 32, 32)
    assert cp.init_feature_spread(image.expand(8, -1, -1, -1), image_size=32) == {"cls": 0.0, "mean_patch": 0.0}
    near = cp.init_feature_spread(image + 0.01 * torch.rand(8, 1, 32, 32), image_size=32)
    far = cp.init_feature_spread(torch.rand(8, 1, 32, 32), image_size=32)
    assert all(0 < near[k] < far[k] for k in near)


def test_unknown_arm_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        cp.main(["--out", str(tmp_path / "p.json"), "--arms", "no_such_arm"])


def test_recorded_run_is_complete_and_says_what_the_docstring_says():
    """Notebook 03 shows this run: every arm recorded, the ceiling's ViT never leaves the prevalence-only loss in
    its 400 steps while the CNN does, longer training lets the ViT leave it, and with a BatchNorm on the head's input
    and 1,200 steps the ViT clears the raw-pixel floor."""
    records = {r["arm"]: r for r in cp.load_plateau()}
    assert set(records) == {a.name for a in cp.ARMS}
    for r in records.values():
        assert len(r["loss"]) == r["steps"] // r["loss_every"]
    assert records["vit"]["escape_step"] is None
    assert records["cnn"]["escape_step"] is not None and records["cnn"]["escape_step"] < 400
    assert records["vit_1200"]["escape_step"] is not None
    assert records["cnn"]["macro_auroc"] > records["vit"]["macro_auroc"] + 0.2
    floor = cp.load_pixel_floor()["macro_auroc"]
    assert records["cnn"]["macro_auroc"] > floor > records["vit"]["macro_auroc"]
    bn = records["vit_bn_head"]  # standardising the head's input shortens the plateau, below the floor still
    assert bn["escape_step"] is not None and records["vit"]["macro_auroc"] < bn["macro_auroc"] < floor
    bn_long = records["vit_bn_head_1200"]  # with 3x the steps it leaves early and clears the floor
    assert bn_long["escape_step"] < records["vit_1200"]["escape_step"]
    assert bn_long["macro_auroc"] > floor > records["vit_1200"]["macro_auroc"]
    assert all(0 < v < 1 for v in json.loads(cp.RECORDED.read_text())["init_feature_spread"].values())


def test_plateau_figure():
    from matplotlib.figure import Figure

    from raddino_lib.viz.floors import plot_ceiling_plateau

    record = {"arm": "a", "loss": [0.3, 0.2], "loss_every": 25, "base_rate_bce": 0.23, "macro_auroc": 0.7}
    fig = plot_ceiling_plateau([record, {**record, "arm": "b", "macro_auroc": 0.6}], floor=0.8)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    with pytest.raises(ValueError, match="no arms"):
        plot_ceiling_plateau([])
