"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a folder ``checkpoints/step_0000120/`` holding

- ``tensors.safetensors``: model weights (``student.*``, ``teacher.*``, buffers such as the DINO
  centers; ``load_backbone`` reads the ``teacher.backbone.*`` part directly), optimizer moments
  (``optim.<param name>.exp_avg`` ...) and RNG states (``rng.torch``, ``rng.cuda``, ``rng.numpy``);
- ``state.json``: the step, the resolved config, optimizer hyper-parameters per group, the RNG
  states that are not tensors (Python's ``random``, numpy's position) and anything the caller adds.

The folder is written under a temporary name and renamed, so a killed run never leaves a
half-written checkpoint; ``state.json`` is written last and marks a complete one.
Loading with :func:`load_checkpoint` restores weights, optimizer and RNGs so that the
continued run is bit-identical to an uninterrupted one (on CPU).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from raddino_lib import atomic

TENSORS_NAME = "tensors.safetensors"
STATE_NAME = "state.json"
STEP_PREFIX = "step_"


@dataclass
class Checkpoint:
    path: Path  # the checkpoint folder
    step: int  # number of optimizer steps completed when it was written
    state: dict[str, Any]  # the parsed state.json


# ----------------------------------------------------------------------------------------------
# RNG states


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG this process draws from: (tensors, JSON-able values)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    py_version, py_internal, py_gauss = random.getstate()
    values = {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
              "python": [py_version, list(py_internal), py_gauss]}
    return tensors, values


def set_rng_state(tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(tensors["rng.cuda"]))
    kind, pos, has_gauss, cached = values["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    py_version, py_internal, py_gauss = values["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))


# ----------------------------------------------------------------------------------------------
# Optimizer state by parameter name (no positional indices, no pickle)


def optimizer_state(optimizer: torch.optim.Optimizer, names: dict[torch.nn.Parameter, str]
                    ) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """(tensors ``optim.<name>.<key>``, per-group scalars with the names of their parameters)."""
    tensors: dict[str, torch.Tensor] = {}
    for param, state in optimizer.state.items():
        for key, value in state.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{names[param]}.{key}"] = value.detach()
    groups = []
    for group in optimizer.param_groups:
        scalars = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
        scalars = {k: v for k, v in scalars.items() if _json_able(v)}
        groups.append({"scalars": scalars, "params": [names[p] for p in group["params"]]})
    return tensors, groups


def set_optimizer_state(optimizer: torch.optim.Optimizer, params: dict[str, torch.nn.Parameter],
                        tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]], source: Path) -> None:
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(f"{source}: {len(groups)} optimizer groups saved, {len(optimizer.param_groups)} now "
                         "(the model or the optimizer settings changed since the checkpoint was written)")
    for group, saved in zip(optimizer.param_groups, groups, strict=True):
        for key, value in saved["scalars"].items():
            group[key] = tuple(value) if isinstance(group.get(key), tuple) else value
    optimizer.state.clear()
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        name, field = key[len("optim."):].rsplit(".", 1)
        if name not in params:
            raise ValueError(f"{source}: optimizer state for unknown parameter '{name}'")
        param = params[name]
        optimizer.state[param][field] = value.to(param.device) if field != "step" else value


def _json_able(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


# ----------------------------------------------------------------------------------------------
# Save / find / load


def save_checkpoint(ckpt_dir: str | os.PathLike, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, config: dict[str, Any], extra: dict[str, Any] | None = None,
                    keep: int = 2, metadata: dict[str, str] | None = None) -> Path:
    """Write ``ckpt_dir/step_<step>/`` atomically; keep only the ``keep`` newest checkpoints.

    ``model`` is the whole training module (student, teacher, centers); ``optimizer`` optimizes
    parameters of ``model``. ``metadata``: extra safetensors metadata (e.g. the backbone spec under
    ``"raddino"`` so that ``load_backbone`` can read the checkpoint).
    """
    ckpt_dir = Path(ckpt_dir)
    final = ckpt_dir / f"{STEP_PREFIX}{step:07d}"
    names = {p: n for n, p in model.named_parameters()}
    tensors = {k: v.detach() for k, v in model.state_dict().items()}
    clash = [k for k in tensors if k.startswith(("optim.", "rng."))]
    if clash:
        raise ValueError(f"model state keys {clash[:3]} clash with the checkpoint's 'optim.'/'rng.' namespaces")
    optim_tensors, groups = optimizer_state(optimizer, names)
    rng_tensors, rng_values = rng_state()
    tensors.update(optim_tensors)
    tensors.update(rng_tensors)
    tensors = {k: v.cpu().contiguous() for k, v in tensors.items()}
    seen: set[int] = set()
    for k, v in tensors.items():  # tied weights (a language model's input and output embeddings): one copy each
        if v.numel() and v.untyped_storage().data_ptr() in seen:
            tensors[k] = v.clone()
        seen.add(v.untyped_storage().data_ptr())
    state = {"step": step, "config": config, "optimizer_groups": groups, "rng": rng_values, **(extra or {})}

    tmp = ckpt_dir / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {"format": "raddino-checkpoint", "step": str(step), **(metadata or {})}
    save_file(tensors, str(tmp / TENSORS_NAME), metadata=meta)
    atomic.write_json(tmp / STATE_NAME, state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(ckpt_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old.path, ignore_errors=True)
    return final


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[Checkpoint]:
    """Complete checkpoints under ``ckpt_dir``, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    found = []
    for path in sorted(ckpt_dir.glob(f"{STEP_PREFIX}*")) if ckpt_dir.is_dir() else []:
        if (path / STATE_NAME).is_file() and (path / TENSORS_NAME).is_file():
            state = json.loads((path / STATE_NAME).read_text())
            found.append(Checkpoint(path=path, step=int(state["step"]), state=state))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Checkpoint | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None


def load_checkpoint(ckpt: Checkpoint, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    restore_rng: bool = True) -> dict[str, Any]:
    """Restore weights (strict), optimizer state and RNGs from ``ckpt``; return its state.json."""
    tensors = load_file(str(ckpt.path / TENSORS_NAME))
    model_state = {k: v for k, v in tensors.items() if not k.startswith(("optim.", "rng."))}
    missing, unexpected = model.load_state_dict(model_state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{ckpt.path}: checkpoint does not fit the model (missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}); resume with the same config that wrote it (see its state.json)")
    if optimizer is not None:
        params = dict(model.named_parameters())
        set_optimizer_state(optimizer, params, tensors, ckpt.state["optimizer_groups"], ckpt.path)
    if restore_rng:
        set_rng_state(tensors, ckpt.state["rng"])
    return ckpt.state
