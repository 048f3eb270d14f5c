"""Named profiles: one set of notebook parameters per kind of machine.

A profile is a flat dictionary of parameters for each notebook. The pipeline
(``raddino run --profile NAME``) adds the artifact paths that connect the
notebooks (dataset manifest, checkpoints, feature cache) and passes each
dictionary to papermill. Values here are the profile's defaults; the
notebooks' own ``parameters`` cells hold the smoke-sized defaults used when a
notebook is opened by hand.

| profile | where                    | backbone              | image | data                  |
|---------|--------------------------|-----------------------|-------|-----------------------|
| smoke   | CI, 2 CPU cores          | tiny ViT, 4 blocks    | 64    | a few hundred phantoms|
| cpu     | a laptop                 | tiny ViT, 4 blocks    | 64    | thousands of phantoms |
| gpu     | one GPU                  | ViT-S/14              | 224   | tens of thousands     |
| paper   | several GPUs (torchrun)  | ViT-B/14 (DINOv2 init)| 518   | real manifests        |
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

# Notebooks in dependency order; the key is the profile section that feeds it.
NOTEBOOKS: tuple[tuple[str, str], ...] = (
    ("phantoms", "00_phantoms_tour"),
    ("pretrain", "01_pretrain_rad_dino"),
    ("language", "02_language_supervised"),
    ("classification", "03_classification_probe"),
    ("segmentation", "04_segmentation_probe"),
    ("attention", "05_attention_maps"),
    ("metadata", "06_metadata_correlation"),
    ("report_generation", "07_report_generation"),
    ("scaling", "08_scaling_and_ablations"),
    ("ct_phantoms", "09_ct_phantoms_tour"),
    ("colipri", "10_colipri_3d"),
)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # section -> notebook parameters
    # notebook -> seconds it took in the profile's recorded run (2 CPU cores): the estimate shown before a notebook
    # runs in a folder that has no timing of its own yet
    recorded_s: dict[str, float] = field(default_factory=dict)

    def params(self, section: str) -> dict[str, Any]:
        """A copy of one notebook's parameters (safe to update)."""
        if section not in self.sections:
            raise KeyError(f"profile '{self.name}' has no section '{section}' (known: {sorted(self.sections)})")
        return copy.deepcopy(self.sections[section])


def _backbone(arch: str, patch_size: int, depth: int) -> dict[str, Any]:
    # depth 0 keeps the arch's own depth (12 for vit_tiny/small/base)
    return {"arch": arch, "patch_size": patch_size, "depth": depth}


def _probes(common: dict[str, Any], extra: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    probes = ("classification", "segmentation", "attention", "metadata", "report_generation")
    return {name: {**common, **extra.get(name, {})} for name in probes}


# Runs of a few hundred steps need a faster teacher than DINOv2's defaults, which are tuned for
# 125,000 iterations (notebook 01 shows the measurement): momentum from 0.98, a constant teacher
# temperature of 0.04, Sinkhorn-Knopp targets, and a smaller head.
SHORT_RUN_TEACHER: dict[str, Any] = {"head_hidden_dim": 512, "head_bottleneck_dim": 128, "centering": "sinkhorn",
                                     "momentum_teacher": 0.98, "teacher_temp": 0.04}
# DINOv2's own values (ssl_default_config.yaml) for long runs.
DINOV2_TEACHER: dict[str, Any] = {"head_hidden_dim": 2048, "head_bottleneck_dim": 256, "centering": "softmax",
                                  "momentum_teacher": 0.992, "teacher_temp": 0.07}

SMOKE = Profile(
    name="smoke",
    description="every notebook executes on 2 CPU cores in a few minutes (CI)",
    sections={
        "phantoms": {"n_images": 320, "image_size": 64, "probe_image_size": 64, "seed": 0, "balanced": True,
                     "difficulty_epochs": 3},
        "pretrain": {**_backbone("vit_tiny", 8, 4), "global_crop_size": 64, "local_crop_size": 32,
                     "n_local_crops": 4, "batch_size": 16, "max_steps": 30, "out_dim": 1024, "seed": 0,
                     **SHORT_RUN_TEACHER},
        "language": {**_backbone("vit_tiny", 8, 4), "image_size": 64, "batch_size": 32, "max_steps": 30, "seed": 0},
        **_probes({"image_size": 64, "n_boot": 50, "seed": 0, "supervised_steps": 30},
                  {"segmentation": {"epochs": 5, "upernet_epochs": 3},
                   "attention": {"n_images": 4, "interactive": False},
                   "report_generation": {"decoder_steps": 60, "max_len": 48, "max_new_tokens": 48, "n_embd": 64,
                                          "lr": 0.004}}),
        # two tiny arms (data size only)
        "scaling": {**_backbone("vit_tiny", 8, 4), "global_crop_size": 64, "local_crop_size": 32, "n_local_crops": 2,
                    "batch_size": 8, "max_steps": 6, "out_dim": 256, "recipe": "short", "sizes": "48,160",
                    "step_counts": "6", "small_crop": 0, "groups": "data size", "arms": "", "seg_epochs": 2,
                    "n_boot": 50, "seed": 0},
        "ct_phantoms": {"n_volumes": 40, "size": 32, "seed": 0, "balanced": True, "difficulty_epochs": 5,
                        "n_boot": 100},
        # two tiny arms on 16-voxel volumes: every objective and every evaluation runs once
        "colipri": {"n_volumes": 40, "phantom_size": 16, "balanced": True, "preset": "tiny", "input_size": 16,
                    "patch_size": 8, "steps": 6, "batch_size": 8, "lr": 5e-4, "paired_fractions": "100%",
                    "objective_sets": "contrastive,+vision", "generation_weight": 0.1, "mim_weight": 0.1,
                    "mask_ratio": 0.6, "batch_paired": 0.5, "text_init": "", "max_new_tokens": 32, "n_boot": 20,
                    "cnn_epochs": 1, "seg_epochs": 1, "seed": 0},
    },
    recorded_s={"00_phantoms_tour": 39, "01_pretrain_rad_dino": 38, "02_language_supervised": 18,
                "03_classification_probe": 31, "04_segmentation_probe": 27, "05_attention_maps": 21,
                "06_metadata_correlation": 31, "07_report_generation": 26, "08_scaling_and_ablations": 36,
                "09_ct_phantoms_tour": 19, "10_colipri_3d": 16},
)

CPU = Profile(
    name="cpu",
    description="a laptop (2 cores): SSL against random init and the language-supervised encoder in ~30 minutes",
    sections={
        # phantoms at 96 px: the 64 px crops of pretraining then carry finer detail than the probes see
        "phantoms": {"n_images": 3000, "image_size": 96, "probe_image_size": 64, "seed": 0, "balanced": False,
                     "difficulty_epochs": 8},
        "pretrain": {**_backbone("vit_tiny", 8, 4), "global_crop_size": 64, "local_crop_size": 32,
                     "n_local_crops": 4, "batch_size": 32, "max_steps": 300, "out_dim": 1024, "seed": 0,
                     **SHORT_RUN_TEACHER},
        "language": {**_backbone("vit_tiny", 8, 4), "image_size": 64, "batch_size": 64, "max_steps": 400, "seed": 0},
        # the supervised ceiling, test probes on [CLS, mean patch] (findings macro AUROC, age R², sex AUROC): 400
        # steps 0.794, 0.612, 0.937; 800 steps 0.826, 0.678, 0.966; 1,200 steps 0.854, 0.742, 0.979; 1,800 steps
        # 0.865, 0.827, 0.990, the first to reach the age R² of 0.80 (the raw-pixel floor: 0.808, 0.756,
        # 0.896); its findings plateau: experiments.ceiling_plateau. A larger weight on the patient fields lowers all
        # three at 1,200 steps: metadata_weight 3 0.808, 0.724, 0.974; 6 0.815, 0.708, 0.969
        **_probes({"image_size": 64, "n_boot": 300, "seed": 0, "supervised_steps": 1800},
                  {"segmentation": {"epochs": 10, "upernet_epochs": 6},
                   "attention": {"n_images": 8, "interactive": False},
                   # the oracle trains 1.5x longer (macro F1 of the findings it states: 0.82 at 400 steps, 0.83 at
                   # 600, 0.91-0.94 at 800; 600 keeps the profile within its time budget)
                   "report_generation": {"decoder_steps": 400, "oracle_steps": 600, "lr": 0.004}}),
        # every group on a reduced grid: 11 arms of at most 48 steps of 16 images (4x in data, 2x in steps)
        "scaling": {**_backbone("vit_tiny", 8, 4), "global_crop_size": 64, "local_crop_size": 32, "n_local_crops": 2,
                    "batch_size": 16, "max_steps": 48, "out_dim": 1024, "recipe": "short", "sizes": "500,2000",
                    "step_counts": "24,48", "small_crop": 48, "groups": "", "arms": "", "seg_epochs": 2,
                    "n_boot": 100, "seed": 0},
        "ct_phantoms": {"n_volumes": 300, "size": 64, "seed": 0, "balanced": False, "difficulty_epochs": 6,
                        "n_boot": 300},
        # the ablation grid (3 objective sets x 25%/100% reports), 200 steps each, 800 phantoms of 32 voxels (12.5 mm)
        "colipri": {"n_volumes": 800, "phantom_size": 32, "balanced": True, "preset": "tiny", "input_size": 32,
                    "patch_size": 8, "steps": 200, "batch_size": 16, "lr": 5e-4, "paired_fractions": "25%,100%",
                    "objective_sets": "contrastive,+generation,+vision", "generation_weight": 0.1, "mim_weight": 0.1,
                    "mask_ratio": 0.6, "batch_paired": 0.5, "text_init": "", "max_new_tokens": 160,
                    "n_boot": 200, "cnn_epochs": 6, "seg_epochs": 1, "seed": 0},
    },
    recorded_s={"00_phantoms_tour": 62, "01_pretrain_rad_dino": 229, "02_language_supervised": 123,
                "03_classification_probe": 422, "04_segmentation_probe": 139, "05_attention_maps": 31,
                "06_metadata_correlation": 53, "07_report_generation": 260, "08_scaling_and_ablations": 295,
                "09_ct_phantoms_tour": 28, "10_colipri_3d": 263},
)

GPU = Profile(
    name="gpu",
    description="one GPU: the paper's claims on phantoms",
    sections={
        "phantoms": {"n_images": 30000, "image_size": 224, "probe_image_size": 224, "seed": 0, "balanced": False,
                     "difficulty_epochs": 10},
        "pretrain": {**_backbone("vit_small", 14, 0), "global_crop_size": 224, "local_crop_size": 98,
                     "n_local_crops": 8, "batch_size": 128, "max_steps": 20000, "out_dim": 65536, "seed": 0,
                     **DINOV2_TEACHER},
        "language": {**_backbone("vit_small", 14, 0), "image_size": 224, "batch_size": 256, "max_steps": 10000,
                     "seed": 0},
        **_probes({"image_size": 224, "n_boot": 1000, "seed": 0, "supervised_steps": 5000},
                  {"segmentation": {"epochs": 30, "upernet_epochs": 20},
                   "attention": {"n_images": 12, "interactive": False},
                   "report_generation": {"decoder_steps": 3000, "n_embd": 256, "n_layer": 4, "max_len": 128,
                                         "max_new_tokens": 128}}),
        "scaling": {**_backbone("vit_small", 14, 0), "global_crop_size": 224, "local_crop_size": 98,
                    "n_local_crops": 8, "batch_size": 128, "max_steps": 5000, "out_dim": 65536, "recipe": "dinov2",
                    "sizes": "2500,5000,20000", "step_counts": "1250,2500,5000", "small_crop": 112, "groups": "",
                    "arms": "", "seg_epochs": 20, "n_boot": 1000, "seed": 0},
        "ct_phantoms": {"n_volumes": 2000, "size": 128, "seed": 0, "balanced": False, "difficulty_epochs": 20,
                        "n_boot": 1000},
        # Primus-S on 96 voxels (4.2 mm)
        "colipri": {"n_volumes": 2000, "phantom_size": 96, "balanced": False, "preset": "S", "input_size": 96,
                    "patch_size": 8, "steps": 5000, "batch_size": 32, "lr": 5e-4, "paired_fractions": "25%,100%",
                    "objective_sets": "contrastive,+generation,+vision", "generation_weight": 0.1, "mim_weight": 0.1,
                    "mask_ratio": 0.6, "batch_paired": 0.5, "text_init": "", "max_new_tokens": 256,
                    "n_boot": 1000, "cnn_epochs": 20, "seg_epochs": 10, "seed": 0},
    },
)

PAPER = Profile(
    name="paper",
    description="several GPUs with torchrun: RAD-DINO recipe on real manifests from DINOv2 weights",
    sections={
        # The paper profile expects a real manifest (pass --manifest) and DINOv2
        # or RAD-DINO weights (pass --init-weights); phantoms are a fallback.
        "phantoms": {"n_images": 30000, "image_size": 518, "probe_image_size": 518, "seed": 0, "balanced": False,
                     "difficulty_epochs": 10},
        "pretrain": {**_backbone("vit_base", 14, 0), "global_crop_size": 518, "local_crop_size": 224,
                     "n_local_crops": 8, "batch_size": 40, "max_steps": 35000, "out_dim": 65536, "seed": 0,
                     "preset": "rad-dino", **DINOV2_TEACHER, "centering": "sinkhorn"},
        "language": {**_backbone("vit_base", 14, 0), "image_size": 518, "batch_size": 128, "max_steps": 20000,
                     "seed": 0},
        **_probes({"image_size": 518, "n_boot": 1000, "seed": 0, "supervised_steps": 20000},
                  {"segmentation": {"epochs": 30, "upernet_epochs": 20},
                   "attention": {"n_images": 12, "interactive": False},
                   "report_generation": {"decoder_steps": 10000, "n_embd": 512, "n_layer": 6, "vocab_size": 4096,
                                         "max_len": 256, "max_new_tokens": 256}}),
        # sizes as shares of the manifest's train split (real manifests differ in size)
        "scaling": {**_backbone("vit_small", 14, 0), "global_crop_size": 224, "local_crop_size": 98,
                    "n_local_crops": 8, "batch_size": 128, "max_steps": 10000, "out_dim": 65536, "recipe": "dinov2",
                    "sizes": "12.5%,25%,100%", "step_counts": "2500,5000,10000", "small_crop": 112, "groups": "",
                    "arms": "", "seg_epochs": 20, "n_boot": 1000, "seed": 0},
        "ct_phantoms": {"n_volumes": 2000, "size": 192, "seed": 0, "balanced": False, "difficulty_epochs": 20,
                        "n_boot": 1000},
        # the release size: Primus-M on 192 voxels at 2 mm
        "colipri": {"n_volumes": 2000, "phantom_size": 192, "balanced": False, "preset": "M", "input_size": 192,
                    "patch_size": 8, "steps": 20000, "batch_size": 32, "lr": 3e-4, "paired_fractions": "25%,100%",
                    "objective_sets": "contrastive,+generation,+vision", "generation_weight": 0.1, "mim_weight": 0.1,
                    "mask_ratio": 0.6, "batch_paired": 0.5, "text_init": "", "max_new_tokens": 256,
                    "n_boot": 1000, "cnn_epochs": 20, "seg_epochs": 10, "seed": 0},
    },
)

PROFILES: dict[str, Profile] = {p.name: p for p in (SMOKE, CPU, GPU, PAPER)}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise KeyError(f"unknown profile '{name}': choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
