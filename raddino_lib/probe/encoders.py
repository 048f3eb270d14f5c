"""Which frozen encoders a probe compares, by name, between a floor and a ceiling.

Every probe notebook compares the same rows, read top to bottom from floor to ceiling:

* ``pixels`` — no encoder: the same probe on raw pixels (``probe.pixels``), the floor of what needs no learning;
* ``random`` — the architecture at its random initialisation, the floor any learned feature must beat;
* ``ssl`` — the image-only SSL backbone (RAD-DINO's recipe) and ``language`` — a language-supervised image
  encoder (the CLIP-style baseline): the encoders the paper compares;
* extra checkpoints given as ``"name=path,name=path"`` (e.g. the public ``microsoft/rad-dino`` folder);
* ``supervised`` — the same architecture trained on the very labels the probes score
  (``train.supervised``), the ceiling: what this network can reach on this data when it is told the answer.

A measurement without both ends cannot be read: an AUROC of 0.97 is impressive between 0.5 and 0.99 and
meaningless when raw pixels already give 0.96.
"""

from __future__ import annotations

from pathlib import Path

ENCODER_NAMES: tuple[str, ...] = ("ssl", "random", "language")  # the fixed encoder names
FLOOR, CEILING = "pixels", "supervised"  # the rows beside the encoders


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
        if name in out or name in (*ENCODER_NAMES, FLOOR, CEILING):
            raise ValueError(f"extra encoder name {name!r} is used twice (or clashes with "
                             f"{', '.join((*ENCODER_NAMES, FLOOR, CEILING))})")
        out[name] = path
    return out


def table_order(names) -> list[str]:
    """Floors first (report generation's constant ``most_frequent`` report, the pixels, random init), then ssl,
    language, the extras in their order, the ceilings last (the supervised encoder, report generation's
    ``oracle``)."""
    names = list(names)
    head = [n for n in ("most_frequent", FLOOR, "random", "ssl", "language") if n in names]
    tail = [n for n in (CEILING, "oracle") if n in names]
    return head + [n for n in names if n not in head and n not in tail] + tail


def resolve_encoders(ssl: str = "", random: str = "", language: str = "", extra: str = "", supervised: str = ""
                     ) -> dict[str, str]:
    """Map encoder name → checkpoint path, in table order (``table_order``), dropping empty entries.

    Raises:
        FileNotFoundError: a given path does not exist (the message names the encoder).
    """
    given = {"ssl": ssl, "random": random, "language": language, **parse_extra(extra), CEILING: supervised}
    encoders = {name: str(given[name]) for name in table_order(given) if str(given[name]).strip()}
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
        encoders = {k: (str(path) if k == "random" else encoders[k]) for k in table_order([*encoders, "random"])}
        notes.append(f"no random encoder given: saved a random initialisation of "
                     f"{'the architecture of ' + str(like) if like else 'a 4-block ViT-Tiny/8'} ({path})")
    return manifest, encoders, notes


def with_floor_and_ceiling(encoders: dict[str, str], manifest: str, cache_dir: str | Path, image_size: int,
                           supervised: str = "", supervised_steps: int = 300, seed: int = 0, device: str = "cpu",
                           notes: list[str] | None = None) -> dict[str, str]:
    """``encoders`` with the raw-pixel floor and the supervised ceiling added, in table order.

    ``supervised``: the ceiling's backbone file (from an earlier notebook); empty = train it here with
    ``supervised_steps`` steps on the architecture of the random (else first) encoder — or reuse the finished run
    with the same config under ``cache_dir`` (``train.supervised``). 0 steps = no ceiling row.
    """
    from raddino_lib.probe.pixels import PIXELS_SOURCE

    rows = {**encoders, FLOOR: PIXELS_SOURCE}
    if supervised:
        rows[CEILING] = str(resolve_encoders(supervised=supervised)[CEILING])
    elif supervised_steps > 0:
        from raddino_lib.train.supervised import SupervisedConfig, train_supervised

        like = encoders.get("random") or next(iter(encoders.values()), "")
        cfg = SupervisedConfig(manifest=str(manifest), cache_dir=str(Path(cache_dir)), like=like,
                               image_size=image_size, max_steps=supervised_steps, seed=seed, device=device)
        rows[CEILING] = str(train_supervised(cfg))
        if notes is not None:
            notes.append(f"supervised ceiling: {supervised_steps} steps on the architecture of {like} "
                         f"({rows[CEILING]})")
    return {k: rows[k] for k in table_order(rows)}
