import pytest
import torch

from raddino_lib.device import resolve_device


def test_auto_is_cpu_without_cuda_and_names_pass_through():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_says_what_to_do():
    with pytest.raises(ValueError, match="use device='cpu' or 'auto'"):
        resolve_device("cuda")


def test_unknown_device_is_an_error():
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
