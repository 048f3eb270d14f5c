"""COLIPRI: objectives, evaluation against known answers, bit-exact resume of a 3D run, the ablation's table."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from raddino_lib.data.phantoms_ct import generate
from raddino_lib.experiments import colipri as C
from raddino_lib.losses.clip import clip_loss
from raddino_lib.probe import colipri as E
from raddino_lib.train.colipri import (
    COLIPRIConfig,
    load_run,
    mim_loss,
    paired_mask,
    patchify,
    pool_grid,
    random_mask,
    read_ct_manifest,
    read_run_metrics,
    train_colipri,
)


@pytest.fixture(scope="module")
def ct_manifest(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("ct") / "phantoms_ct", n=16, size=16, seed=0, balanced=True)


# ===== objectives =====

def test_contrastive_loss_matches_a_hand_computation():
    """Two pairs, tau = 1: cos matrix [[1, 0], [0.6, 0.8]] → InfoNCE by hand."""
    img = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = [[1.0, 0.0], [0.6, 0.8]]  # s[i][j] = cos(image i, text j)
    i2t = -(math.log(math.exp(s[0][0]) / (math.exp(s[0][0]) + math.exp(s[0][1])))
            + math.log(math.exp(s[1][1]) / (math.exp(s[1][0]) + math.exp(s[1][1])))) / 2
    t2i = -(math.log(math.exp(s[0][0]) / (math.exp(s[0][0]) + math.exp(s[1][0])))
            + math.log(math.exp(s[1][1]) / (math.exp(s[0][1]) + math.exp(s[1][1])))) / 2
    assert clip_loss(img, txt, 0.0).item() == pytest.approx((i2t + t2i) / 2, abs=1e-6)


def test_patchify_follows_the_patch_embedding_raster_order():
    """A Conv3d that copies voxel (a, b, c) of each patch gives patchify's column a·p² + b·p + c."""
    p = 4
    x = torch.randn(2, 1, 8, 12, 4)
    conv = torch.nn.Conv3d(1, 1, p, stride=p, bias=False)
    a, b, c = 1, 3, 2
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, a, b, c] = 1.0
        picked = conv(x).flatten(2).transpose(1, 2)[..., 0]  # (B, N)
    torch.testing.assert_close(patchify(x, p)[..., a * p * p + b * p + c], picked)


def test_mim_loss_is_zero_for_the_normalised_target_and_ignores_visible_patches():
    target = torch.randn(2, 5, 8)
    norm = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    mask = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.float32)
    assert mim_loss(norm, target, mask).item() == pytest.approx(0.0, abs=1e-6)
    wrong_where_visible = norm.clone()
    wrong_where_visible[mask == 0] += 5.0
    assert mim_loss(wrong_where_visible, target, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert mim_loss(norm + 1.0, target, mask).item() == pytest.approx(1.0, abs=1e-5)


def test_random_mask_hides_the_requested_share_and_pool_grid_averages():
    torch.manual_seed(0)
    m = random_mask(4, 27, 0.6, torch.device("cpu"))
    assert m.sum(1).tolist() == [16] * 4
    tokens = torch.arange(8, dtype=torch.float32).view(1, 8, 1)  # a 2x2x2 grid
    assert pool_grid(tokens, (2, 2, 2), 2).item() == pytest.approx(3.5)


def test_paired_subsets_are_nested(ct_manifest):
    df = read_ct_manifest(ct_manifest)
    quarter, half, full = (paired_mask(df, f, 0) for f in (0.25, 0.5, 1.0))
    assert quarter.sum() < half.sum() < full.sum() == (df["split"] == "train").sum()
    assert not (quarter & ~half).any() and not (half & ~full).any()


def test_config_refuses_no_objective_and_a_bad_grid():
    with pytest.raises(ValueError, match="every objective"):
        COLIPRIConfig(contrastive=0.0)
    with pytest.raises(ValueError, match="prefix_pool"):
        COLIPRIConfig(input_size=24, patch_size=8, prefix_pool=2)


# ===== evaluation on known answers =====

def test_zero_shot_scores_rank_volumes_by_their_finding():
    neg, pos = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    images = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])  # unit vectors
    scores = E.zero_shot_scores(images, neg, pos)
    np.testing.assert_allclose(scores[:, 0], [1.0, -1.0, 0.2, -0.2])
    labels = np.array([[1], [0], [1], [0]], dtype=bool)
    result = E.zero_shot_eval(scores, labels, [0], ["a", "b", "c", "d"], n_boot=20)
    assert result["macro_auroc"]["value"] == pytest.approx(1.0)


def test_retrieval_recall_on_known_permutations():
    n = 6
    query = np.eye(n)
    shift = np.roll(np.eye(n), 1, axis=0)  # gallery item i is most like query i-1 ... its partner ranks second
    gallery = 0.9 * shift + 0.1 * np.eye(n)
    groups = np.arange(n)
    np.testing.assert_array_equal(E.retrieval_ranks(query, np.eye(n), groups), np.zeros(n))
    np.testing.assert_array_equal(E.retrieval_ranks(query, gallery, groups), np.ones(n))
    out = E.retrieval_eval(query, gallery, groups, list("abcdef"), ks=(1, 2), n_boot=10)
    assert out["image_to_report"]["R@1"]["value"] == 0.0
    assert out["image_to_report"]["R@2"]["value"] == 1.0
    assert out["chance"] == {"R@1": 1 / 6, "R@2": 2 / 6}
    same_text = np.array([0, 0, 1, 2, 3, 4])  # reports 0 and 1 read the same: retrieving either is a hit
    assert E.retrieval_ranks(query, gallery, same_text)[0] == 0


def test_ct_clinical_f1_of_a_perfect_and_an_empty_report():
    refs = ["FINDINGS: Right pleural effusion. IMPRESSION: Right pleural effusion.",
            "FINDINGS: Mild cardiomegaly. IMPRESSION: Cardiomegaly."]
    truth = E.ct_positive_findings(refs)
    perfect = E.report_metrics(refs, refs, truth, ["a", "b"], n_boot=5)
    assert perfect["clinical_f1_macro"].value == pytest.approx(1.0)
    assert perfect["rouge_l"].value == pytest.approx(1.0)
    empty = E.report_metrics(["No abnormality.", "No abnormality."], refs, truth, ["a", "b"], n_boot=5)
    assert empty["clinical_f1_macro_gt"].value == 0.0


def test_patch_head_reassembles_patches_in_the_embedding_order():
    """Tokens that are the patchified one-hot classes, through an identity head, give back the class volume."""
    p, grid, c = 4, (2, 3, 1), 3
    classes = torch.randint(0, c, (2, 8, 12, 4))
    onehot = torch.nn.functional.one_hot(classes, c).permute(0, 4, 1, 2, 3).float()  # (B, C, D, H, W)
    tokens = torch.stack([patchify(onehot[:, k:k + 1], p) for k in range(c)], 2).flatten(2)  # (B, N, C·p³)
    head = E.PatchSegHead(c * p ** 3, c, p, grid)
    head.norm = torch.nn.Identity()
    with torch.no_grad():
        head.linear.weight.copy_(torch.eye(c * p ** 3))
        head.linear.bias.zero_()
    torch.testing.assert_close(head(tokens), onehot)


def test_structure_maps_follow_the_legend_on_the_input_grid(ct_manifest):
    from raddino_lib.data.volume_manifest import read_legend

    df = read_ct_manifest(ct_manifest)
    cfg = COLIPRIConfig(input_size=16)
    maps = E.structure_maps(df, cfg.preprocess(), read_legend(ct_manifest)["anatomy"])
    assert maps.shape == (len(df), 16, 16, 16)
    assert set(maps.unique().tolist()) <= set(range(len(E.SEG_STRUCTURES) + 1))
    lungs = (maps == 1).float().mean().item()
    assert 0.02 < lungs < 0.5  # the lungs: a few percent of the 400 mm box at 25 mm voxels, never most of it
    with pytest.raises(ValueError, match="legend lacks"):
        E.structure_maps(df, cfg.preprocess(), {0: "background"})


# ===== training: resume and the arms =====

def _cfg(manifest, out, steps, **kw):
    base = dict(manifest=str(manifest), out_dir=str(out), input_size=16, steps=steps, batch_size=4, ckpt_every=2,
                contrastive=1.0, generation=1.0, mim=1.0, paired_fraction=0.5, text_width=32, text_depth=1,
                text_heads=2, decoder_embd=32, decoder_layers=1, decoder_heads=2, decoder_vocab=300, seed=0)
    return COLIPRIConfig(**{**base, **kw})


def test_a_killed_3d_run_resumes_bit_exactly(ct_manifest, tmp_path):
    whole = train_colipri(_cfg(ct_manifest, tmp_path / "whole", 4), progress=False)
    # a run killed after step 2: the uninterrupted run's step-2 checkpoint, tokenizers and rows before step 2
    import shutil

    first = _cfg(ct_manifest, tmp_path / "split", 4)

    shutil.copytree(tmp_path / "whole" / "checkpoints" / "step_0000002", tmp_path / "split" / "checkpoints" /
                    "step_0000002")
    for name in ("text_tokenizer", "decoder_tokenizer", "colipri_config.json"):
        src = tmp_path / "whole" / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / "split" / name)
    rows = pd.read_csv(whole.metrics_path)
    rows[rows["step"] < 2].to_csv(tmp_path / "split" / "metrics.csv", index=False)
    resumed = train_colipri(first, progress=False, log=lambda *_: None)
    a = read_run_metrics(whole.out_dir).drop(columns="volumes_per_s")
    b = read_run_metrics(resumed.out_dir).drop(columns="volumes_per_s")
    pd.testing.assert_frame_equal(a, b)
    ma, _, _ = load_run(whole.out_dir)
    mb, _, _ = load_run(resumed.out_dir)
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_arms_share_the_towers_init_and_the_order_of_volumes_whatever_objectives_are_on(ct_manifest):
    """The ablation compares objectives, not seeds: switching generation and MIM on leaves the image tower, the
    text tower and its projection as they were, and the paired volumes come in the same order."""
    from raddino_lib.train.colipri import MixedSampler, build_model, build_tokenizers

    reports = read_ct_manifest(ct_manifest)["report"].tolist()
    plain = _cfg(ct_manifest, "unused", 2, generation=0.0, mim=0.0)
    full = _cfg(ct_manifest, "unused", 2, generation=1.0, mim=1.0)
    tok = build_tokenizers(plain, reports)
    a, b = build_model(plain, tok), build_model(full, tok)
    assert a.decoder is None and b.decoder is not None and b.mim_head is not None
    shared = b.state_dict()
    for k, v in a.state_dict().items():
        assert torch.equal(v, shared[k]), k
    other_seed = build_model(_cfg(ct_manifest, "unused", 2, generation=0.0, mim=0.0, seed=1), tok)
    assert not torch.equal(other_seed.image.proj.weight, a.image.proj.weight)

    paired, unpaired = np.arange(10), np.arange(10, 16)
    only_paired, mixed = MixedSampler(paired, np.zeros(0, int), 4, 0.5, seed=3), MixedSampler(paired, unpaired, 8, 0.5,
                                                                                              seed=3)
    draws = []
    for _ in range(6):  # draws from the global RNG in between (dropout, masks) change nothing
        torch.rand(5)
        draws.append((only_paired.next()[0], mixed.next()))
    assert all(p == m[0] for p, m in draws) and all(len(m[1]) == 4 for _, m in draws)
    assert len(set(draws[0][0] + draws[1][0])) == 8  # an epoch draws without replacement (10 volumes: 2 batches)
    resumed = MixedSampler(paired, np.zeros(0, int), 4, 0.5, seed=3)
    replay = MixedSampler(paired, np.zeros(0, int), 4, 0.5, seed=3)
    for _ in range(3):
        replay.next()
    resumed.restore(replay.state())
    assert [resumed.next() for _ in range(4)] == [replay.next() for _ in range(4)]
    with pytest.raises(ValueError, match="delete its folder"):
        resumed.restore([[1, 2], []])
    m1 = random_mask(3, 27, 0.5, torch.device("cpu"), torch.Generator().manual_seed(7))
    torch.rand(3)
    assert torch.equal(m1, random_mask(3, 27, 0.5, torch.device("cpu"), torch.Generator().manual_seed(7)))


def test_a_folder_with_another_config_is_refused(ct_manifest, tmp_path):
    train_colipri(_cfg(ct_manifest, tmp_path / "run", 2), progress=False)
    with pytest.raises(ValueError, match="another config"):
        train_colipri(_cfg(ct_manifest, tmp_path / "run", 2, lr=1e-2), progress=False)


def test_arms_cross_objectives_and_fractions_and_fill_the_table(ct_manifest, tmp_path):
    arms = C.build_arms([1.0, 0.5], ["contrastive", "+vision"])
    assert [a.name for a in arms] == ["contrastive @ 50% reports", "+vision @ 50% reports",
                                      "contrastive @ 100% reports", "+vision @ 100% reports"]
    base = _cfg(ct_manifest, tmp_path, 2)
    cfg = arms[1].config(base, tmp_path)
    assert (cfg.contrastive, cfg.generation, cfg.mim, cfg.paired_fraction) == (1.0, 1.0, 1.0, 0.5)
    assert arms[0].config(base, tmp_path).mim == 0.0
    with pytest.raises(ValueError, match="unknown"):
        C.build_arms([1.0], ["+magic"])
    assert C.parse_fractions("25%, 1") == [0.25, 1.0]
    df = read_ct_manifest(ct_manifest)
    from raddino_lib.data.volume_manifest import read_legend
    from raddino_lib.train.colipri import load_volumes

    targets = E.structure_maps(df, base.preprocess(), read_legend(ct_manifest)["anatomy"])
    data = C.Data.from_frame(df, load_volumes(df, base.preprocess()), targets)
    settings = C.EvalSettings(n_boot=5, max_new_tokens=8, seg_epochs=1)
    record = C.run_arm(arms[3], base, data, tmp_path / "arms", settings, progress=False)
    again = C.run_arm(arms[3], base, data, tmp_path / "arms", settings, progress=False)
    assert again == record  # read back, not retrained
    assert record["n_paired"] == int((df["split"] == "train").sum()) and record["n_image_only"] == 0
    assert {"bleu4", "rouge_l", "clinical_f1_macro_gt"} <= set(record["generation"])  # its own decoder writes
    contrastive_only = C.run_arm(arms[2], base, data, tmp_path / "arms", settings, progress=False)
    assert contrastive_only["generation"] == {}  # no decoder, no generation numbers
    frame = C.results_frame([record, contrastive_only], {})
    table = C.results_table(frame)
    assert set(C.COLUMNS) <= set(table.columns)
    assert set(record["segmentation"]["per_structure"]) == set(E.SEG_STRUCTURES)
    assert 0.0 <= record["segmentation"]["mean"]["value"] <= 1.0
    assert "chance" in table.index
    assert set(C.above_chance(record)) == {"zero-shot AUROC", "image→report R@5", "report→image R@5"}
    assert C.results_dict(frame)["chance"]["zero-shot AUROC"]["value"] == 0.5
    # run_arms: the same records whether the arms run in turn or side by side (each on one thread)
    in_turn = C.run_arms(arms[2:], base, data, tmp_path / "in_turn", settings, workers=1, log=lambda _: None)
    apart = C.run_arms(arms[2:], base, data, tmp_path / "apart", settings, workers=2, log=lambda _: None)
    moved = ("out_dir", "encoder", "train_seconds")
    for one, other in zip(in_turn, apart, strict=True):
        assert {k: v for k, v in one.items() if k not in moved} == {k: v for k, v in other.items() if k not in moved}


def test_arm_costs_follow_the_measured_order_of_the_cpu_grid(tmp_path):
    # measured on the cpu profile (200 steps of 16): +vision @ 100% 146 s > +generation 123-129 s > +vision @ 25%
    # 83 s > contrastive only 62-66 s, whatever the share of reports
    base = COLIPRIConfig(manifest="m.csv", steps=200, batch_size=16, contrastive=1.0, generation=0.1, mim=0.1,
                         batch_paired=0.5)
    cost = {a.name: C.relative_cost(a.config(base, tmp_path)) for a in C.build_arms((0.25, 1.0))}
    order = sorted(cost, key=cost.get, reverse=True)
    assert order[0] == "+vision @ 100% reports" and set(order[-2:]) == {"contrastive @ 25% reports",
                                                                      "contrastive @ 100% reports"}
    assert cost["+generation @ 25% reports"] == cost["+generation @ 100% reports"] > cost["+vision @ 25% reports"]
    assert cost["+generation @ 25% reports"] == 2 * cost["contrastive @ 25% reports"]
