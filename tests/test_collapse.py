"""Collapse diagnostics: hand-computed values, the monitor's verdicts, and a collapse forced on purpose."""

import math
import warnings

import pytest
import torch

from raddino_lib.train.collapse import CollapseMonitor, collapse_stats, entropy

K, D = 16, 8


def _stats(targets, logits=None, student=None, cls=None):
    n = targets.shape[0]
    logits = torch.zeros(n, K) if logits is None else logits
    student = torch.zeros(n, K) if student is None else student
    cls = torch.eye(n, D) if cls is None else cls
    return collapse_stats(targets, logits, student, 0.1, cls)


def test_entropy_of_uniform_and_one_hot_rows():
    assert entropy(torch.full((K,), 1.0 / K)).item() == pytest.approx(math.log(K))
    assert entropy(torch.eye(K)[3]).item() == pytest.approx(0.0, abs=1e-12)
    p = torch.tensor([0.5, 0.25, 0.25])
    assert entropy(p).item() == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))


def test_uniform_targets():
    s = _stats(torch.full((4, K), 1.0 / K))
    assert s["teacher_entropy"] == pytest.approx(math.log(K))
    assert s["prototypes_used"] == pytest.approx(K)
    assert s["student_entropy"] == pytest.approx(math.log(K))  # zero student logits: uniform softmax


def test_one_hot_targets_on_one_prototype_and_on_distinct_prototypes():
    same = _stats(torch.eye(K)[[2, 2, 2, 2]])
    assert same["teacher_entropy"] == pytest.approx(0.0, abs=1e-9)
    assert same["prototypes_used"] == pytest.approx(1.0)
    spread = _stats(torch.eye(K)[[0, 1, 2, 3]])
    assert spread["teacher_entropy"] == pytest.approx(0.0, abs=1e-9)
    assert spread["prototypes_used"] == pytest.approx(4.0)  # exp(log 4): four prototypes equally


def test_logit_std_spread_and_cls_std_by_hand():
    logits = torch.tensor([[0.0, 2.0] + [1.0] * (K - 2), [0.0, 2.0] + [1.0] * (K - 2)])  # identical rows
    s = _stats(torch.full((2, K), 1.0 / K), logits=logits, cls=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert s["teacher_logit_std"] == pytest.approx(logits[0].std().item())
    assert s["teacher_logit_spread"] == pytest.approx(0.0)  # nothing differs between the two images
    # normalised CLS (1, 0) and (0, 1): per-dimension std over the batch is sqrt(1/2) in both dimensions
    assert s["cls_std"] == pytest.approx(math.sqrt(0.5))


def test_monitor_classifies_and_warns_once_after_patience():
    monitor = CollapseMonitor(n_prototypes=K, patience=3)
    uniform = {"teacher_entropy": math.log(K), "prototypes_used": K, "teacher_logit_std": 0.0}
    healthy = {"teacher_entropy": 0.3 * math.log(K), "prototypes_used": 12.0, "teacher_logit_std": 0.1}
    one_hot = {"teacher_entropy": 0.0, "prototypes_used": 1.0, "teacher_logit_std": 1.0}
    assert monitor.state(healthy) == "healthy"
    assert monitor.state(one_hot) == "one-hot"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for step in range(2):
            assert monitor.update(uniform, step) == "uniform"  # not yet: patience 3
        monitor.update(healthy, 2)  # the run of uniform steps is broken
        monitor.update(uniform, 3)
        monitor.update(uniform, 4)
    with pytest.warns(RuntimeWarning, match="uniform collapse for 3 steps"):
        monitor.update(uniform, 5)
    assert monitor.warned == "uniform"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per run
        monitor.update(uniform, 6)


def test_a_forced_collapse_is_detected_in_a_real_run(tmp_path):
    """A teacher temperature of 100 makes every target uniform: the run must say so, once."""
    from raddino_lib.data.toy_shapes import generate_shapes
    from raddino_lib.train.metrics_log import read_metrics
    from raddino_lib.train.pretrain import PretrainConfig, pretrain

    manifest = generate_shapes(tmp_path / "shapes", n=48, size=32, seed=0)
    cfg = PretrainConfig(manifest=str(manifest), output_dir=str(tmp_path / "run"), arch="vit_tiny", patch_size=8,
                         depth=2, global_crop_size=16, local_crop_size=8, n_local_crops=2, batch_size=8,
                         max_steps=12, out_dim=64, head_hidden_dim=64, head_bottleneck_dim=32, centering="sinkhorn",
                         teacher_temp=100.0, warmup_teacher_temp=100.0, checkpoint_every=100, device="cpu")
    with pytest.warns(RuntimeWarning, match="uniform collapse"):
        result = pretrain(cfg, progress=False)
    rows = read_metrics(result.metrics_path)
    assert all(r["teacher_entropy"] > 0.99 * math.log(64) for r in rows)
    assert all(r["prototypes_used"] > 0.99 * 64 for r in rows)
