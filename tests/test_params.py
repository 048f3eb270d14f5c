import pytest

from raddino_lib.params import ParameterError, check_params


def test_accepts_right_types_and_int_for_float():
    check_params({"n": 3, "lr": 1, "name": "x", "flag": True}, {"n": int, "lr": float, "name": str, "flag": bool})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"n": "3"}, "parameter 'n' must be int, got str '3'"),
        ({"n": True}, "parameter 'n' must be int, got bool True"),
        ({}, "parameter 'n' is missing"),
    ],
)
def test_rejects_wrong_types_with_the_parameter_name(values, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(")):
        check_params(values, {"n": int})


def test_missing_path_is_named(tmp_path):
    check_params({"manifest": ""}, {"manifest": str}, existing_paths=("manifest",))  # empty = not given
    with pytest.raises(ParameterError, match="parameter 'manifest': path .*nope.csv' does not exist"):
        check_params({"manifest": str(tmp_path / "nope.csv")}, {"manifest": str}, existing_paths=("manifest",))
