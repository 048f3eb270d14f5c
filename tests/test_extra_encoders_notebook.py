"""`extra_encoders` end to end: the classification notebook probes folders of three other libraries' layouts (each
saved by its own library) as rows beside its floors, through the one resolver."""

import json

import papermill as pm
import pytest
from test_encoder_folders import OPEN_CLIP_OWN, save_hf_clip_folder, save_open_clip_folder, save_timm_folder

from raddino_lib.pipeline import KERNEL_NAME, NOTEBOOK_DIR


@pytest.mark.slow
def test_classification_notebook_probes_timm_open_clip_and_hf_clip_folders(tmp_path):
    save_timm_folder(tmp_path / "timm")
    save_hf_clip_folder(tmp_path / "hf_clip")
    save_open_clip_folder(tmp_path / "open_clip", OPEN_CLIP_OWN)
    extra = ",".join(f"{name}={tmp_path / name}" for name in ("timm", "hf_clip", "open_clip"))
    out = tmp_path / "03"
    out.mkdir()
    pm.execute_notebook(str(NOTEBOOK_DIR / "03_classification_probe.ipynb"), str(out / "executed.ipynb"),
                        parameters={"output_dir": str(out), "extra_encoders": extra, "image_size": 32,
                                    "supervised_steps": 0, "n_boot": 20}, kernel_name=KERNEL_NAME, cwd=str(out),
                        progress_bar=False)
    table = json.loads((out / "results.json").read_text())["table"]
    assert {"timm", "hf_clip", "open_clip", "pixels", "random"} <= set(table)
    for row in ("timm", "hf_clip", "open_clip"):
        cell = table[row]["cls_macro_auroc"]
        assert 0.0 <= cell["value"] <= 1.0 and cell["ci_low"] <= cell["ci_high"], row
