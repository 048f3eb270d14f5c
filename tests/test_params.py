from dataclasses import dataclass
from typing import ClassVar

import pytest

from raddino_lib.params import NotebookParams, ParameterError, check_params


@dataclass(frozen=True)
class Example(NotebookParams):
    EXISTING_PATHS: ClassVar[tuple[str, ...]] = ("manifest",)
    n: int
    lr: float
    name: str
    flag: bool
    manifest: str


GOOD = {"n": 3, "lr": 1, "name": "x", "flag": True, "manifest": ""}


def test_accepts_right_types_converts_int_to_float_and_ignores_other_globals():
    params = check_params(Example, {**GOOD, "unrelated": object()})
    assert params == Example(n=3, lr=1.0, name="x", flag=True, manifest="")
    assert isinstance(params.lr, float)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n": "3"}, "parameter 'n' must be int, got str '3'"),
        ({"n": True}, "parameter 'n' must be int, got bool True"),
        ({"lr": "0.1"}, "parameter 'lr' must be float, got str '0.1'"),
        ({"flag": 1}, "parameter 'flag' must be bool, got int 1"),
    ],
)
def test_rejects_wrong_types_with_the_parameter_name(change, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(")):
        check_params(Example, {**GOOD, **change})


def test_missing_parameter_is_named():
    values = dict(GOOD)
    del values["name"]
    with pytest.raises(ParameterError, match="parameter 'name' is missing"):
        check_params(Example, values)


def test_missing_path_is_named(tmp_path):
    with pytest.raises(ParameterError, match="parameter 'manifest': path .*nope.csv' does not exist"):
        check_params(Example, {**GOOD, "manifest": str(tmp_path / "nope.csv")})
    (tmp_path / "m.csv").write_text("id\n")
    assert check_params(Example, {**GOOD, "manifest": str(tmp_path / "m.csv")}).manifest.endswith("m.csv")


def test_only_dataclasses_are_accepted():
    with pytest.raises(TypeError, match="parameter dataclass"):
        check_params(dict, GOOD)
