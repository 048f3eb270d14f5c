"""Which frozen encoders a probe compares, by name.

Every probe notebook compares the same kinds of encoder: the image-only SSL
backbone ("ssl", RAD-DINO's recipe), the same architecture at its random
initialisation ("random", the floor any learned feature must beat) and a
language-supervised image encoder ("language", the CLIP-style baseline), plus
any number of extra checkpoints given as ``"name=path,name=path"`` (e.g. the
public ``microsoft/rad-dino`` Hugging Face folder).
"""

from __future__ import annotations

from pathlib import Path

ENCODER_NAMES: tuple[str, ...] = ("ssl", "random", "language")  # fixed names, in table order


def parse_extra(extra: str) -> dict[str, str]:
    """``"a=/x.safetensors, b=/y"`` → ``{"a": "/x.safetensors", "b": "/y"}``; empty entries are dropped."""
    out: dict[str, str] = {}
    for item in (s.strip() for s in extra.split(",")):
        if not item:
            continue
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ValueError(f"extra encoder {item!r} is not 'name=path' (separate several by commas)")
        if name in out or name in ENCODER_NAMES:
            raise ValueError(f"extra encoder name {name!r} is used twice (or clashes with {', '.join(ENCODER_NAMES)})")
        out[name] = path
    return out


def resolve_encoders(ssl: str = "", random: str = "", language: str = "", extra: str = "") -> dict[str, str]:
    """Map encoder name → checkpoint path, in table order, dropping empty entries.

    Raises:
        FileNotFoundError: a given path does not exist (the message names the encoder).
    """
    given = {"ssl": ssl, "random": random, "language": language, **parse_extra(extra)}
    encoders = {name: str(path) for name, path in given.items() if str(path).strip()}
    for name, path in encoders.items():
        if not Path(path).exists():
            raise FileNotFoundError(
                f"encoder '{name}': checkpoint {path} not found (pass a backbone .safetensors file, a training "
                "checkpoint or a Hugging Face Dinov2Model folder; leave it empty to skip this encoder)")
    return encoders


def make_random_encoder(path: str | Path, like: str | Path = "", arch: str = "vit_tiny", patch_size: int = 8,
                        img_size: int = 64, depth: int = 4, seed: int = 0) -> Path:
    """Save a randomly initialised backbone at ``path``: the "random" floor when none was given.

    ``like``: a checkpoint whose architecture (spec) to copy, so the floor is the same network untrained;
    empty = a small ``arch``/``patch_size``/``img_size``/``depth`` ViT.
    """
    import torch

    from raddino_lib.models.backbone import backbone_from_spec, create_backbone
    from raddino_lib.models.weights import read_backbone_spec, save_backbone

    torch.manual_seed(seed)
    if like:
        model = backbone_from_spec(read_backbone_spec(like))
    else:
        model = create_backbone(arch, patch_size=patch_size, img_size=img_size, depth=depth)
    save_backbone(model, path, meta={"note": f"random initialisation (seed {seed})", "like": str(like)})
    return Path(path)


def prepare_probe_inputs(output_dir: str | Path, manifest: str = "", ssl: str = "", random: str = "",
                         language: str = "", extra: str = "", image_size: int = 64, seed: int = 0,
                         n_phantoms: int = 240) -> tuple[str, dict[str, str], list[str]]:
    """What a probe notebook needs when opened by hand with empty paths.

    An empty ``manifest`` → ``n_phantoms`` balanced phantoms under ``output_dir/phantoms``; an empty ``random``
    → a random initialisation of the first given encoder's architecture (or of a small ViT) saved under
    ``output_dir``. Returns (manifest path, encoders name → path, notes saying what was generated).
    """
    out, notes = Path(output_dir), []
    if not manifest:
        from raddino_lib.data.phantoms.generate import generate

        manifest = str(generate(out / "phantoms", n_phantoms, image_size, seed, balanced=True))
        notes.append(f"no manifest given: generated {n_phantoms} balanced phantoms at {image_size} px ({manifest})")
    encoders = resolve_encoders(ssl, random, language, extra)
    if "random" not in encoders:
        like = next(iter(encoders.values()), "")
        path = make_random_encoder(out / "random_encoder.safetensors", like=like, img_size=image_size, seed=seed)
        encoders["random"] = str(path)
        encoders = {k: encoders[k] for k in dict.fromkeys([*ENCODER_NAMES, *encoders]) if k in encoders}
        notes.append(f"no random encoder given: saved a random initialisation of "
                     f"{'the architecture of ' + str(like) if like else 'a 4-block ViT-Tiny/8'} ({path})")
    return manifest, encoders, notes
