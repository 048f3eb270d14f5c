"""SSL pretraining: config, learning signal, exact resume, NaN stop, run-dir artifacts, CLI."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from raddino_lib.models import load_backbone
from raddino_lib.train.checkpoint import latest_checkpoint, list_checkpoints
from raddino_lib.train.metrics_log import read_metrics
from raddino_lib.train.pretrain import NonFiniteLossError, PretrainConfig, pretrain
from raddino_lib.train.ssl_arch import SSLMetaArch

TINY = dict(arch="vit_tiny", patch_size=8, depth=2, global_crop_size=32, local_crop_size=16, n_local_crops=2,
            batch_size=4, out_dim=128, head_hidden_dim=64, head_bottleneck_dim=32, drop_path_rate=0.1)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from raddino_lib.data.phantoms.generate import generate

    return str(generate(tmp_path_factory.mktemp("phantoms"), n=24, size=32, seed=0))


def _cfg(manifest, out, **kw) -> PretrainConfig:
    return PretrainConfig(**{**TINY, "manifest": manifest, "output_dir": str(out), **kw})


def _losses(path) -> list[tuple[float, ...]]:
    return [(r["step"], r["total_loss"], r["dino_loss"], r["ibot_loss"], r["koleo_loss"]) for r in read_metrics(path)]


# ----- config --------------------------------------------------------------------------------------


def test_config_validates_and_presets_apply_in_order():
    with pytest.raises(ValueError, match="multiples of patch_size"):
        PretrainConfig(patch_size=14, global_crop_size=100)
    with pytest.raises(ValueError, match="centering"):
        PretrainConfig(centering="mean")
    cfg = PretrainConfig.from_preset("rad-dino", batch_size=8)
    assert (cfg.global_crop_size, cfg.centering, cfg.arch, cfg.batch_size, cfg.preset) == \
        (518, "sinkhorn", "vit_base", 8, "rad-dino")
    assert PretrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="no field"):
        PretrainConfig.from_preset("dinov2", learning_rate=1.0)
    assert PretrainConfig(batch_size=256).peak_lr() == pytest.approx(0.004 * 0.5)  # sqrt(256/1024)


def test_cli_flags_map_to_config_fields():
    from raddino_lib.train.cli import add_parser, config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["pretrain", "--preset", "rad-dino", "--out", "/tmp/x", "--max-steps", "7",
                              "--no-cache-images", "--local-crops-scale", "0.1", "0.3"])
    cfg = config_from_args(args)
    assert (cfg.output_dir, cfg.max_steps, cfg.cache_images, cfg.local_crops_scale, cfg.global_crop_size) == \
        ("/tmp/x", 7, False, (0.1, 0.3), 518)


# ----- training --------------------------------------------------------------------------------------


def test_student_learns_to_match_a_frozen_teacher(manifest, tmp_path):
    """Teacher frozen (momentum 1) with stateless Sinkhorn targets at a fixed temperature: only the student
    moves, so the cross-entropy to the teacher's targets must fall."""
    cfg = _cfg(manifest, tmp_path, max_steps=12, momentum_teacher=1.0, centering="sinkhorn",
               warmup_teacher_temp=0.07, koleo_weight=0.0, base_lr=0.02, lr_warmup_fraction=0.0,
               freeze_last_layer_steps=0, drop_path_rate=0.0, weight_decay=0.0, weight_decay_end=0.0)
    rows = _losses(pretrain(cfg, progress=False).metrics_path)
    first, last = sum(r[1] for r in rows[:3]) / 3, sum(r[1] for r in rows[-3:]) / 3
    assert last < first - 0.5, f"loss did not decrease: first 3 steps {first:.3f}, last 3 {last:.3f}"


def test_resume_after_a_kill_is_bit_identical(manifest, tmp_path):
    straight = pretrain(_cfg(manifest, tmp_path / "a", max_steps=6, checkpoint_every=2), progress=False)
    killed = _cfg(manifest, tmp_path / "b", max_steps=6, checkpoint_every=2, stop_after_steps=5)
    pretrain(killed, progress=False)
    # the job "dies" after step 5 before any checkpoint of it: drop the end-of-invocation checkpoint
    shutil.rmtree(latest_checkpoint(tmp_path / "b" / "checkpoints").path)
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").step == 4
    resumed = pretrain(_cfg(manifest, tmp_path / "b", max_steps=6, checkpoint_every=2, resume=True), progress=False)
    assert _losses(resumed.metrics_path) == _losses(straight.metrics_path)  # exact float equality, 6 rows
    a, b = load_file(str(straight.backbone_path)), load_file(str(resumed.backbone_path))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="different config"):
        pretrain(_cfg(manifest, tmp_path / "b", max_steps=6, checkpoint_every=2, resume=True, out_dim=64))


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(manifest, tmp_path, monkeypatch):
    original, calls = SSLMetaArch.total_loss, []

    def poisoned(self, *args):
        total, parts = original(self, *args)
        calls.append(1)
        return (total * float("nan") if len(calls) == 4 else total), parts

    monkeypatch.setattr(SSLMetaArch, "total_loss", poisoned)
    cfg = _cfg(manifest, tmp_path, max_steps=8, checkpoint_every=2)
    with pytest.raises(NonFiniteLossError, match="step 3"):
        pretrain(cfg, progress=False)
    assert [c.step for c in list_checkpoints(tmp_path / "checkpoints")] == [2]
    assert len(read_metrics(tmp_path / "metrics.csv")) == 3
    assert not (tmp_path / "backbone.safetensors").exists()


def test_run_dir_holds_config_metrics_and_loadable_backbones(manifest, tmp_path):
    cfg = _cfg(manifest, tmp_path, max_steps=3, checkpoint_every=2)
    result = pretrain(cfg, progress=False)
    assert json.loads((tmp_path / "config.json").read_text()) == cfg.to_dict()
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    assert ckpt.step == 3 and ckpt.state["config"] == cfg.to_dict()
    rows = read_metrics(result.metrics_path)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["lr"] >= 0 and 0.04 <= r["teacher_temp"] <= 0.07 and r["images_per_s"] > 0 for r in rows)
    final, init = load_backbone(result.backbone_path), load_backbone(result.backbone_init_path)
    assert final.embed_dim == 192 and len(final.blocks) == 2
    from_ckpt = load_backbone(ckpt.path / "tensors.safetensors")  # a training checkpoint is a backbone source too
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(final.forward_features(x), from_ckpt.forward_features(x), atol=1e-6)
        assert not torch.allclose(final.forward_features(x), init.forward_features(x), atol=1e-4)
    # continual pretraining: init_weights seeds student and teacher; backbone_init is exactly those weights
    cont = pretrain(_cfg(manifest, tmp_path / "cont", max_steps=1, init_weights=str(result.backbone_path)),
                    progress=False)
    a, b = load_file(str(result.backbone_path)), load_file(str(cont.backbone_init_path))
    assert all(torch.equal(a[k], b[k]) for k in a)
