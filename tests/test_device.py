"""--device: where training runs, resolved in one place, with one-line errors."""

from __future__ import annotations

import pytest
import torch

from autoprune.core.device import resolve_device
from autoprune.core.errors import AutopruneError


def test_auto_picks_a_gpu_only_when_torch_sees_one() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused_in_one_line() -> None:
    with pytest.raises(AutopruneError, match="no CUDA GPU.*--device cpu"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_index_out_of_range_is_refused() -> None:
    with pytest.raises(AutopruneError, match="no such GPU"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_unknown_device_names_the_choices() -> None:
    with pytest.raises(AutopruneError, match="'tpu'.*auto, cpu or cuda"):
        resolve_device("tpu")
