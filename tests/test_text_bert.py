"""The BERT text tower and its WordPiece tokenizer: against transformers' own forward and AutoTokenizer, saved
and reloaded inside a CLIP model, and a local BERT folder (CXR-BERT's layout) as the start of the text tower."""

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from raddino_lib.data.tokenizer import WordPieceTokenizer, load_tokenizer
from raddino_lib.models import create_backbone
from raddino_lib.models.clip import CLIPModel, load_clip, save_clip
from raddino_lib.models.text import BertTextEncoder

REPORTS = ["No acute cardiopulmonary abnormality.", "Small left pleural effusion with adjacent atelectasis.",
           "Cardiomegaly. Mild pulmonary edema.", "Right upper lobe consolidation, likely pneumonia."] * 5


@pytest.fixture(scope="module")
def wordpiece():
    return WordPieceTokenizer.train(REPORTS, vocab_size=400, max_length=24)


def test_wordpiece_frames_pads_and_splits_unseen_words_into_pieces(wordpiece):
    ids = wordpiece(["small effusion", "effusions"])
    assert ids.shape == (2, 24) and ids.dtype == torch.long
    tokens = wordpiece.fast.convert_ids_to_tokens(ids[0].tolist())
    assert tokens[:4] == ["[CLS]", "small", "effusion", "[SEP]"] and set(tokens[4:]) == {"[PAD]"}
    pieces = wordpiece.fast.convert_ids_to_tokens(ids[1].tolist())
    assert pieces[1] == "effusion" and pieces[2] == "##s"  # an unseen plural: the known word and a continuation
    assert wordpiece.pad_id == 0 and wordpiece.decode(ids[0].tolist()) == "small effusion"
    assert wordpiece(["word " * 50]).shape == (1, 24)  # truncated to max_length


def test_wordpiece_round_trips_through_autotokenizer(wordpiece, tmp_path):
    folder = wordpiece.save(tmp_path / "tok")
    hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    text = REPORTS[1]
    assert hf(text)["input_ids"] == [i for i in wordpiece.encode(text) if i != wordpiece.pad_id]
    again = load_tokenizer(folder)
    assert isinstance(again, WordPieceTokenizer) and again.max_length == 24
    assert torch.equal(again(REPORTS[:3]), wordpiece(REPORTS[:3]))
    (tmp_path / "word.json").write_text('{"type": "word", "vocab": []}')  # an older run's word tokenizer
    with pytest.raises(ValueError, match="retrain"):
        load_tokenizer(tmp_path / "word.json")


def test_bert_tower_is_bert_models_cls_token_with_padding_masked(wordpiece):
    torch.manual_seed(0)
    tower = BertTextEncoder.from_config(wordpiece.vocab_size, 24, width=32, depth=2, heads=2).eval()
    ids = wordpiece(REPORTS[:3])
    mask = (ids != 0).long()
    expected = tower.bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]  # full length, untrimmed
    assert torch.allclose(tower(ids), expected, atol=1e-5)
    assert tower.width == 32 and tower.bert.config.intermediate_size == 128


def test_mean_pooling_averages_the_report_tokens_only_and_survives_the_spec(wordpiece):
    """pool="mean": each report's token outputs averaged by hand over its own non-padding tokens."""
    from raddino_lib.models.text import text_tower_from_spec

    torch.manual_seed(0)
    tower = BertTextEncoder.from_config(wordpiece.vocab_size, 24, width=32, depth=2, heads=2, pool="mean").eval()
    ids = wordpiece(REPORTS[:3])
    hidden = tower.bert(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
    for row in range(3):
        n = int((ids[row] != 0).sum())
        assert n < 24 and torch.allclose(tower(ids)[row], hidden[row, :n].mean(0), atol=1e-5)
    again = text_tower_from_spec(tower.spec())
    again.load_state_dict(tower.state_dict())
    assert again.pool == "mean" and torch.allclose(again.eval()(ids), tower(ids), atol=1e-6)
    older = {k: v for k, v in tower.spec().items() if k != "pool"}  # saved before pooling was a choice
    assert text_tower_from_spec(older).pool == "cls"
    with pytest.raises(ValueError, match="choose one of"):
        BertTextEncoder.from_config(wordpiece.vocab_size, 24, width=32, depth=1, heads=2, pool="max")


def test_clip_with_a_bert_tower_saves_and_loads(wordpiece, tmp_path):
    torch.manual_seed(0)
    image = create_backbone("vit_tiny", patch_size=8, img_size=32, depth=1)
    model = CLIPModel(image, BertTextEncoder.from_config(wordpiece.vocab_size, 24, width=32, depth=1, heads=2),
                      proj_dim=16).eval()
    loaded = load_clip(save_clip(model, tmp_path / "clip.safetensors"))
    assert isinstance(loaded.text_encoder, BertTextEncoder)
    ids = wordpiece(REPORTS[:4])
    assert torch.allclose(loaded.encode_text(ids), model.encode_text(ids), atol=1e-6)


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory, wordpiece):
    """A tiny CXR-BERT-like folder: BertModel.save_pretrained plus its tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(1)
    BertModel(BertConfig(vocab_size=wordpiece.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(str(folder))
    wordpiece.fast.save_pretrained(str(folder))
    return folder


def test_text_init_starts_the_text_tower_from_a_local_bert_folder(bert_folder, tmp_path):
    from raddino_lib.data.phantoms import generate
    from raddino_lib.train.language import CLIPConfig, build_model, build_tokenizer, train_clip

    manifest = generate(tmp_path / "data", n=24, size=32, seed=0, balanced=True)
    cfg = CLIPConfig(manifest=str(manifest), out_dir=str(tmp_path / "run"), arch="vit_tiny", patch_size=8, depth=1,
                     image_size=32, batch_size=8, max_steps=1, proj_dim=16, max_length=48, eval_batch_size=16,
                     text_init=str(bert_folder))
    tokenizer = build_tokenizer(cfg, REPORTS)
    model = build_model(cfg, tokenizer)
    reference = BertModel.from_pretrained(str(bert_folder), add_pooling_layer=False)
    for name, value in reference.state_dict().items():
        assert torch.equal(model.text_encoder.bert.state_dict()[name], value), name
    result = train_clip(cfg, progress=False)
    assert (result.tokenizer_path / "tokenizer.json").is_file()
    assert isinstance(load_clip(result.model_path).text_encoder, BertTextEncoder)


def test_text_init_refuses_a_folder_that_is_not_bert(tmp_path):
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50)).save_pretrained(str(tmp_path / "gpt2"))
    with pytest.raises(ValueError, match="expected 'bert'"):
        BertTextEncoder.from_pretrained(str(tmp_path / "gpt2"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        BertTextEncoder.from_pretrained(str(tmp_path / "nothing"))


def test_the_same_reports_give_the_same_vocabulary(wordpiece):
    again = WordPieceTokenizer.train(list(reversed(REPORTS)), vocab_size=400, max_length=24)
    assert again.fast.get_vocab() == wordpiece.fast.get_vocab()  # ids too: the trained text tower depends on them
    with pytest.raises(ValueError, match="raise it"):
        WordPieceTokenizer.train(REPORTS, vocab_size=20)


def test_image_init_starts_the_image_tower_from_an_encoder_folder(tmp_path):
    from test_encoder_folders import MEAN, save_timm_folder

    from raddino_lib.data.phantoms import generate
    from raddino_lib.models import load_backbone
    from raddino_lib.train.language import CLIPConfig, build_model, build_tokenizer, train_clip

    save_timm_folder(tmp_path / "timm")
    manifest = generate(tmp_path / "data", n=24, size=32, seed=0, balanced=True)
    cfg = CLIPConfig(manifest=str(manifest), out_dir=str(tmp_path / "run"), image_init=str(tmp_path / "timm"),
                     image_size=32, batch_size=8, max_steps=1, proj_dim=16, text_width=32, text_depth=1,
                     text_heads=2, max_length=48, eval_batch_size=16)
    model = build_model(cfg, build_tokenizer(cfg, REPORTS))
    reference = load_backbone(tmp_path / "timm")
    assert model.image_encoder.spec.image_mean == pytest.approx(MEAN)  # the folder's normalisation, not ImageNet's
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.image_encoder.eval().forward_features(x), reference.forward_features(x), atol=1e-5)
    result = train_clip(cfg, progress=False)
    assert load_backbone(result.image_encoder_path).spec.embed_dim == reference.spec.embed_dim
    with pytest.raises(ValueError, match="image_init"):
        CLIPConfig(manifest="m.csv", image_init=str(tmp_path / "missing"))
