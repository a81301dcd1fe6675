import pytest
import torch

from autoprune.data import load_data
from autoprune.errors import AutopruneError
from autoprune.models import fingerprint, load_model, save_checkpoint
from autoprune.plan import Plan
from autoprune.pruning import find_groups, prune


def test_digits_split_is_held_out(digits):
    assert digits.input_shape == (1, 8, 8)
    assert len(digits.train) + len(digits.val) == 1797
    assert not set(digits.train.indices) & set(digits.val.indices)


def test_function_and_torchvision_specs():
    m = load_model("tests.helpers:tiny_resnet")
    assert m(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    assert fingerprint(m) == fingerprint(load_model("tests.helpers:tiny_resnet"))
    r = load_model("torchvision:resnet18")
    assert r.fc.out_features == 1000


@pytest.mark.parametrize("criterion", ["l1", "taylor", "entropy"])
def test_pruned_checkpoint_loads_back_with_weights_only(tmp_path, criterion):
    # taylor and entropy need calibration data to score; rebuilding the shapes must not.
    model = load_model("tests.helpers:tiny_resnet")
    plan = Plan(ratios={g.name: 0.5 for g in find_groups(model, input_shape=(1, 8, 8))}, criterion=criterion)
    calib = (torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    pruned = prune(model, plan, input_shape=(1, 8, 8), calibration=calib)
    path = save_checkpoint(pruned, tmp_path / "m.pt", arch="tests.helpers:tiny_resnet",
                           plan=plan.model_dump(mode="json"), input_shape=(1, 8, 8))
    back = load_model(str(path))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(back(x), pruned(x))


def test_bare_state_dict_is_explained(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(load_model("tests.helpers:tiny_resnet").state_dict(), path)
    with pytest.raises(AutopruneError, match="'arch'.*bare state_dict"):
        load_model(str(path))


def test_image_folder(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.new("RGB", (20, 20), color=(i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    data = load_data(f"{tmp_path}?size=16")
    assert data.input_shape == (3, 16, 16)
    assert len(data.train) + len(data.val) == 10


@pytest.mark.parametrize(("spec", "loader", "pattern"), [
    ("builtin:cifar", load_data, "builtin:digits"),
    ("no/such/dir", load_data, "no such directory"),
    ("tests.helpers:nothing", load_data, "no function 'nothing'"),
    ("tests.helpers:broken_data", load_data, r"\(train_dataset, val_dataset\)"),
    ("nosuchpkg.mod:fn", load_model, "cannot import module 'nosuchpkg.mod'"),
    ("torchvision:resnet9000", load_model, "no such torchvision model"),
    ("missing.pt", load_model, "no such file"),
    ("builtin:bert", load_model, "builtin:demo"),
])
def test_bad_specs_are_explained(spec, loader, pattern):
    with pytest.raises(AutopruneError, match=pattern):
        loader(spec)


def _write_idx(path, array):
    import gzip

    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def test_fashion_mnist_reads_the_debian_idx_files(tmp_path, monkeypatch):
    import numpy as np

    from autoprune.data import load_data

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    monkeypatch.setenv("AUTOPRUNE_FASHION_MNIST", str(tmp_path))
    data = load_data("builtin:fashion-mnist?train=30&val=10")
    assert (len(data.train), len(data.val)) == (30, 10) and data.input_shape == (1, 28, 28)
    assert sorted({int(data.val[i][1]) for i in range(10)}) == sorted({int(y) for y in data.val.tensors[1]})
    assert len(load_data("builtin:fashion-mnist").train) == 50


def test_fashion_mnist_errors_name_the_fix(tmp_path, monkeypatch):
    from autoprune.data import load_data

    monkeypatch.setenv("AUTOPRUNE_FASHION_MNIST", str(tmp_path))
    with pytest.raises(AutopruneError, match="apt-get install dataset-fashion-mnist"):
        load_data("builtin:fashion-mnist")
    with pytest.raises(AutopruneError, match=r"option 'size=3' is not understood; use \?train=N&val=N"):
        load_data("builtin:fashion-mnist?size=3")
