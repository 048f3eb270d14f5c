"""Checkpoint selection: the kNN validation scorer and pretrain's best-teacher bookkeeping."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from raddino_lib.probe.selection import ValScorer, knn_val_scorer


class RawFeatures(torch.nn.Module):
    """forward_features returns the flattened input as the [CLS] token: kNN then works on raw pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, None, :]  # (B, 1, C*H*W)


def _clusters(n_per_class: int, n_classes: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(n_classes).repeat_interleave(n_per_class, 0)  # (N, C): one direction per class
    x = (centres * 5 + 0.1 * torch.randn(centres.shape, generator=g)).view(-1, 1, 1, n_classes)
    return x, centres.numpy()


def test_scorer_is_perfect_on_separable_classes_and_near_chance_on_shuffled_labels():
    bank, bank_y = _clusters(10, 4, seed=0)
    query, query_y = _clusters(5, 4, seed=1)
    assert ValScorer(bank, bank_y, query, query_y, kind="accuracy")(RawFeatures()) == 1.0
    assert ValScorer(bank, bank_y, query, query_y, kind="auroc")(RawFeatures()) == 1.0
    shuffled = bank_y[np.random.default_rng(0).permutation(len(bank_y))]
    assert ValScorer(bank, shuffled, query, query_y, kind="accuracy")(RawFeatures()) < 0.6


def test_knn_val_scorer_reads_the_manifest_and_never_the_test_split(tmp_path):
    from raddino_lib.data.toy_shapes import generate_shapes

    manifest = generate_shapes(tmp_path, n=64, size=16, seed=0)
    scorer = knn_val_scorer(manifest, image_size=16, label_column="shape")
    import pandas as pd

    df = pd.read_csv(manifest)
    assert len(scorer.bank) == (df["split"] == "train").sum() and len(scorer.query) == (df["split"] == "val").sum()
    assert 0.0 <= scorer(RawFeatures()) <= 1.0
    with pytest.raises(ValueError, match="no column 'nope'"):
        knn_val_scorer(manifest, image_size=16, label_column="nope")


def test_pretrain_keeps_the_teacher_of_the_best_score_and_resumes_it(tmp_path):
    from raddino_lib.data.toy_shapes import generate_shapes
    from raddino_lib.train.metrics_log import read_metrics
    from raddino_lib.train.pretrain import PretrainConfig, pretrain

    manifest = generate_shapes(tmp_path / "shapes", n=32, size=16, seed=0)
    scores = iter([0.2, 0.7, 0.5, 0.6])  # best at the 2nd evaluation = step 4

    def scorer(model):
        return next(scores)

    cfg = PretrainConfig(manifest=str(manifest), output_dir=str(tmp_path / "run"), arch="vit_tiny", patch_size=8,
                         depth=1, global_crop_size=16, local_crop_size=8, n_local_crops=0, batch_size=4,
                         max_steps=8, out_dim=32, head_hidden_dim=32, head_bottleneck_dim=16, eval_every=2,
                         checkpoint_every=4, device="cpu")
    first = pretrain(PretrainConfig(**{**cfg.to_dict(), "stop_after_steps": 4}), progress=False, scorer=scorer)
    assert (first.best_step, first.best_score) == (4, 0.7)
    done = pretrain(PretrainConfig(**{**cfg.to_dict(), "resume": True}), progress=False, scorer=scorer)
    assert (done.best_step, done.best_score) == (4, 0.7)  # 0.5 and 0.6 later do not beat it
    assert [r["step"] for r in read_metrics(done.run_dir / "val_scores.csv")] == [2, 4, 6, 8]
    with safe_open(str(done.best_path), "pt") as f:
        assert json.loads(f.metadata()["raddino_meta"])["step"] == 4
