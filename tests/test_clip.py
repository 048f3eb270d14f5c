"""CLIP baseline: the loss against hand-computed values and invariants, the towers, evaluation metrics and the
trainer on a few tiny phantoms."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raddino_lib.losses.clip import MAX_LOGIT_SCALE, CLIPLoss, clip_logits, clip_loss
from raddino_lib.models import create_backbone, load_backbone
from raddino_lib.models.clip import CLIPModel, load_clip, save_clip
from raddino_lib.models.text import BertTextEncoder
from raddino_lib.train.language import CLIPConfig, train_clip
from raddino_lib.train.language_eval import _auroc, _recall


def test_two_by_two_hand_computed():
    # orthonormal pairs: cos = identity; scale 1 -> every row is softmax([1, 0]).
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = clip_loss(img, img.clone(), logit_scale=0.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_three_by_three_asymmetric_hand_computed():
    # images on axes; texts chosen so cos(image_i, text_j) is a known matrix; scale e^log(2) = 2.
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    cos = txt.t()  # cos[i, j] = img_i . txt_j
    logits = 2 * cos
    i2t = [-(logits[i, i] - torch.logsumexp(logits[i], 0)) for i in range(3)]
    t2i = [-(logits[j, j] - torch.logsumexp(logits[:, j], 0)) for j in range(3)]
    expected = 0.5 * (sum(i2t) / 3 + sum(t2i) / 3)
    # written out by hand for row 1 (image 1): logits [0, 1.6, 0] -> -log(e^1.6 / (e^1.6 + 2))
    assert i2t[1].item() == pytest.approx(-math.log(math.exp(1.6) / (math.exp(1.6) + 2)), abs=1e-6)
    assert clip_loss(img, txt, math.log(2)).item() == pytest.approx(expected.item(), abs=1e-6)
    # the two directions differ here, so the loss is not simply one cross-entropy
    assert sum(i2t).item() != pytest.approx(sum(t2i).item())


@pytest.mark.parametrize("batch", [2, 5, 16])
def test_identical_embeddings_give_log_batch(batch):
    same = torch.randn(1, 8).repeat(batch, 1)
    assert clip_loss(same, same, math.log(1 / 0.07)).item() == pytest.approx(math.log(batch), abs=1e-5)


def test_loss_is_invariant_to_norm_and_symmetric_in_swapping_modalities():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    base = clip_loss(a, b, 1.3)
    assert clip_loss(3 * a, 0.5 * b, 1.3).item() == pytest.approx(base.item(), abs=1e-5)
    assert clip_loss(b, a, 1.3).item() == pytest.approx(base.item(), abs=1e-5)
    perm = torch.randperm(6, generator=g)
    assert clip_loss(a[perm], b[perm], 1.3).item() == pytest.approx(base.item(), abs=1e-5)


def test_matching_pairs_drive_the_loss_towards_zero_and_mismatch_above_log_batch():
    x = F.normalize(torch.eye(4), dim=-1)
    assert clip_loss(x, x, math.log(100)).item() < 1e-6
    assert clip_loss(x, x.roll(1, 0), math.log(100)).item() > math.log(4)


def test_logit_scale_is_clamped_at_100_and_module_initializes_at_tau_007():
    x = torch.eye(3)
    assert clip_logits(x, x, 10.0).max().item() == pytest.approx(MAX_LOGIT_SCALE)
    module = CLIPLoss()
    assert module.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert module.temperature == pytest.approx(0.07)
    loss = module(torch.randn(4, 3), torch.randn(4, 3))
    loss.backward()
    assert module.logit_scale.grad is not None and torch.isfinite(module.logit_scale.grad)


def test_groups_of_distinct_ids_equal_the_plain_loss_and_duplicates_share_the_target():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    plain = clip_loss(a, b, 0.7)
    assert clip_loss(a, b, 0.7, groups=torch.tensor([5, 2, 9, 0])).item() == pytest.approx(plain.item(), abs=1e-6)
    # texts 0 and 1 identical: image 0's target is (1/2, 1/2, 0); hand-computed with orthonormal embeddings.
    img = torch.eye(2)
    txt = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss = clip_loss(img, txt, 0.0, groups=torch.tensor([3, 3]))
    # logits = [[1, 1], [0, 0]]: every row and column softmax is either uniform or (e/(e+1), 1/(e+1)).
    row = math.log(2)  # both rows are uniform -> CE with uniform target = log 2
    col = -0.5 * (math.log(math.e / (math.e + 1)) + math.log(1 / (math.e + 1)))  # columns [1, 0]
    assert loss.item() == pytest.approx(0.5 * (row + col), abs=1e-6)
    with pytest.raises(ValueError, match="groups"):
        clip_loss(img, txt, 0.0, groups=torch.tensor([1, 2, 3]))


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        clip_loss(torch.zeros(2, 3), torch.zeros(3, 3), 0.0)


# ---------------------------------------------------------------------------------------------------
# Text tower, two-tower model, evaluation metrics and the trainer on a few tiny phantoms.

def _tiny_clip() -> CLIPModel:
    torch.manual_seed(0)
    text = BertTextEncoder.from_config(vocab_size=20, max_length=10, width=16, depth=1, heads=2)
    return CLIPModel(create_backbone("vit_tiny", patch_size=8, img_size=32, depth=1), text, proj_dim=8).eval()


def test_text_tower_ignores_padding_and_trailing_pad_columns():
    text = _tiny_clip().text_encoder
    ids = torch.tensor([[1, 5, 6, 2, 0, 0, 0, 0, 0, 0], [1, 7, 8, 9, 4, 2, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    full = text.bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]  # all ten columns, padding masked
    assert torch.allclose(text(ids), full, atol=1e-5)
    assert torch.allclose(text(ids[:1, :4]), full[:1], atol=1e-5)


def test_clip_model_embeddings_are_unit_norm_and_round_trip(tmp_path):
    model = _tiny_clip()
    images, ids = torch.randn(3, 3, 32, 32), torch.tensor([[1, 5, 2] + [0] * 7] * 3)
    img, txt = model.encode_image(images), model.encode_text(ids)
    assert img.shape == txt.shape == (3, 8)
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-5)
    back = load_clip(save_clip(model, tmp_path / "clip.safetensors"))
    assert torch.allclose(back.encode_image(images), img, atol=1e-6)
    assert torch.allclose(back.encode_text(ids), txt, atol=1e-6)


def test_recall_at_k_hand_computed_with_duplicate_reports():
    sim = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.0, 0.5, 0.4]])
    distinct = np.eye(3, dtype=bool)
    # image 0: own report first; image 1: own report second; image 2: own report second.
    assert _recall(sim, distinct, (1, 2, 3)) == {1: 1 / 3, 2: 1.0, 3: 1.0}
    same_01 = distinct | np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)  # reports 0 and 1 identical
    assert _recall(sim, same_01, (1,)) == {1: 2 / 3}


def test_rank_auroc_matches_sklearn_with_ties_and_unknown_labels():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40).astype(float)
    s = rng.integers(0, 5, 40).astype(float)  # many ties
    assert _auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    y[:5] = np.nan
    assert _auroc(y, s) == pytest.approx(roc_auc_score(y[5:], s[5:]))
    assert np.isnan(_auroc(np.ones(4), np.arange(4.0)))


def test_config_validation_names_the_bad_fields():
    with pytest.raises(ValueError, match="patch_drop"):
        CLIPConfig(manifest="m.csv", patch_drop=1.0)
    with pytest.raises(ValueError, match="manifest"):
        CLIPConfig()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from raddino_lib.data.phantoms import generate

    root = tmp_path_factory.mktemp("clip")
    manifest = generate(root / "data", n=24, size=32, seed=0, balanced=True)
    cfg = CLIPConfig(manifest=str(manifest), out_dir=str(root / "run"), arch="vit_tiny", patch_size=8, depth=1,
                     image_size=32, batch_size=8, max_steps=2, proj_dim=16, text_width=32, text_depth=1,
                     text_heads=2, max_length=48, eval_batch_size=16)
    return cfg, train_clip(cfg, progress=False)


def test_train_clip_writes_a_loadable_encoder_and_metrics(tiny_run):
    cfg, result = tiny_run
    assert [p.exists() for p in (result.image_encoder_path, result.model_path, result.tokenizer_path,
                                  result.metrics_path)] == [True] * 4
    encoder = load_backbone(result.image_encoder_path)
    clip = load_clip(result.model_path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(encoder.forward_features(x), clip.image_encoder.forward_features(x), atol=1e-6)
    lines = result.metrics_path.read_text().splitlines()
    assert lines[0] == "step,loss,lr,temperature,seconds" and len(lines) == 1 + cfg.max_steps
    assert json.loads((result.run_dir / "config.json").read_text())["max_steps"] == cfg.max_steps
    m = result.final_metrics
    assert 0.0 <= m["zeroshot_macro_auroc"] <= 1.0 and 0.0 <= m["retrieval_r@5_i2t"] <= 1.0
    assert m["retrieval_r@1_t2i"] <= m["retrieval_r@5_t2i"] <= m["retrieval_r@10_t2i"]


def test_train_clip_is_deterministic_on_cpu(tiny_run, tmp_path):
    cfg, result = tiny_run
    again = train_clip(CLIPConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "again")}), progress=False)
    assert again.metrics_path.read_text().split("\n")[1].split(",")[:4] == \
        result.metrics_path.read_text().split("\n")[1].split(",")[:4]
    assert again.final_metrics["final_loss"] == result.final_metrics["final_loss"]


def test_train_clip_cli_registers_and_parses(tmp_path):
    from raddino_lib.cli import build_parser

    args = build_parser().parse_args(["train-clip", "--manifest", "m.csv", "--out", str(tmp_path), "--arch",
                                      "vit_tiny", "--crop-scale", "0.5", "1", "--no-cache-images"])
    from raddino_lib.train.language_cli import config_from_args

    cfg = config_from_args(args)
    assert (cfg.arch, cfg.out_dir, cfg.crop_scale, cfg.cache_images) == ("vit_tiny", str(tmp_path), (0.5, 1.0),
                                                                         False)
