"""Two-tower models of each library behind one interface: embeddings equal to the library's own forward, and
zero-shot evaluation running on any of them."""

import pytest
import torch
import torch.nn.functional as F
from test_encoder_folders import MEAN, OPEN_CLIP_OWN, STD, save_hf_clip_folder, save_open_clip_folder

from raddino_lib.data.tokenizer import WordPieceTokenizer
from raddino_lib.models import create_backbone
from raddino_lib.models.clip import CLIPModel, save_clip
from raddino_lib.models.text import BertTextEncoder
from raddino_lib.models.two_tower import detect_two_tower, load_two_tower

TEXTS = ["Small left pleural effusion.", "No acute abnormality.", "Cardiomegaly with mild edema."]


def _images(size=32):
    return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_hf_clip_folder_matches_transformers_forward(tmp_path):
    folder = tmp_path / "hf"
    reference = save_hf_clip_folder(folder)
    tokenizer = WordPieceTokenizer.train(TEXTS * 3, vocab_size=100, max_length=16)
    tokenizer.fast.save_pretrained(str(folder))
    model = load_two_tower(folder)
    assert model.kind == "hf_clip" and model.image_size == 32 and model.image_mean == pytest.approx(MEAN)
    batch = tokenizer.fast(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=_images())
        torch.testing.assert_close(model.encode_text(TEXTS), F.normalize(out.text_embeds, dim=-1), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_image(_images()), F.normalize(out.image_embeds, dim=-1),
                                   atol=1e-5, rtol=0)


def test_open_clip_folder_matches_open_clip_forward(tmp_path):
    import open_clip

    cfg = {**OPEN_CLIP_OWN, "text_cfg": {**OPEN_CLIP_OWN["text_cfg"], "vocab_size": 49408}}  # its BPE's ids
    reference = save_open_clip_folder(tmp_path / "oc", cfg)
    model = load_two_tower(tmp_path / "oc")
    assert model.kind == "open_clip"
    assert model.image_mean == pytest.approx(MEAN) and model.image_std == pytest.approx(STD)
    with torch.no_grad():
        text = reference.encode_text(open_clip.tokenize(TEXTS, context_length=16))
        torch.testing.assert_close(model.encode_text(TEXTS), F.normalize(text, dim=-1), atol=1e-5, rtol=0)
        image = reference.encode_image(_images())
        torch.testing.assert_close(model.encode_image(_images()), F.normalize(image, dim=-1), atol=1e-5, rtol=0)


def _save_raddino_clip(folder):
    tokenizer = WordPieceTokenizer.train(TEXTS * 3, vocab_size=200, max_length=24)
    torch.manual_seed(0)
    clip = CLIPModel(create_backbone("vit_tiny", patch_size=8, img_size=32, depth=1),
                     BertTextEncoder.from_config(tokenizer.vocab_size, 24, width=32, depth=1, heads=2), 16).eval()
    folder.mkdir()
    save_clip(clip, folder / "clip_model.safetensors")
    tokenizer.save(folder / "tokenizer")
    return clip, tokenizer


def test_this_packages_clip_run_folder_is_a_two_tower_model(tmp_path):
    clip, tokenizer = _save_raddino_clip(tmp_path / "run")
    for path in (tmp_path / "run", tmp_path / "run" / "clip_model.safetensors"):
        assert detect_two_tower(path) == "raddino_clip"
        model = load_two_tower(path)
        with torch.no_grad():
            assert torch.allclose(model.encode_text(TEXTS), clip.encode_text(tokenizer(TEXTS)), atol=1e-6)
            assert torch.allclose(model.encode_image(_images()), clip.encode_image(_images()), atol=1e-6)
    (tmp_path / "alone").mkdir()
    (tmp_path / "run" / "clip_model.safetensors").rename(tmp_path / "alone" / "clip_model.safetensors")
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_two_tower(tmp_path / "alone")


def test_zero_shot_and_retrieval_run_on_any_two_tower_model(tmp_path):
    from raddino_lib.data.manifest import read_manifest
    from raddino_lib.data.phantoms import generate
    from raddino_lib.train.language_eval import evaluate_two_tower

    df = read_manifest(generate(tmp_path / "data", n=24, size=32, seed=0, balanced=True))
    save_hf_clip_folder(tmp_path / "hf")
    WordPieceTokenizer.train(df["report"], vocab_size=100, max_length=16).fast.save_pretrained(str(tmp_path / "hf"))
    _save_raddino_clip(tmp_path / "run")
    for path in (tmp_path / "hf", tmp_path / "run"):
        ev = evaluate_two_tower(load_two_tower(path), df, "test", findings=("Effusion", "Cardiomegaly"))
        n = int((df["split"] == "test").sum())
        assert ev.image_emb.shape == (n, 16) and ev.scores.shape == (n, 2)
        assert torch.allclose(torch.from_numpy(ev.image_emb).norm(dim=1), torch.ones(n), atol=1e-5)


def test_a_folder_in_no_layout_fails_listing_the_layouts(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="raddino_clip .*open_clip .*hf_clip"):
        detect_two_tower(tmp_path / "x")


def test_zero_shot_command_prints_scores_with_an_interval(tmp_path, capsys):
    import json

    from raddino_lib.cli import main
    from raddino_lib.data.phantoms import generate

    manifest = generate(tmp_path / "data", n=24, size=32, seed=0, balanced=True)
    _save_raddino_clip(tmp_path / "run")
    assert main(["zero-shot", "--model", str(tmp_path / "run"), "--manifest", str(manifest), "--n-boot", "20",
                 "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "raddino_clip" and 0.0 <= out["zeroshot_macro_auroc"] <= 1.0
    low, high = out["zeroshot_macro_auroc_ci"]
    assert low <= high and out["retrieval_r@1_i2t"] <= out["retrieval_r@10_i2t"]
    assert main(["zero-shot", "--model", str(tmp_path / "nowhere"), "--manifest", str(manifest)]) == 2
