import pytest
import torch

from autoprune.core.errors import AutopruneError
from autoprune.load.data import load_data
from autoprune.load.models import fingerprint, load_model, save_checkpoint
from autoprune.prune.engine import prune
from autoprune.prune.groups import find_groups
from autoprune.prune.plan import Plan


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

    from autoprune.load.data import load_data

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
    from autoprune.load.data import load_data

    monkeypatch.setenv("AUTOPRUNE_FASHION_MNIST", str(tmp_path))
    with pytest.raises(AutopruneError, match="apt-get install dataset-fashion-mnist"):
        load_data("builtin:fashion-mnist")
    with pytest.raises(AutopruneError, match=r"option 'size=3' is not understood; use \?train=N&val=N"):
        load_data("builtin:fashion-mnist?size=3")


def _images(root, n=6, size=40):
    """Images with a horizontal gradient, so crops and flips change what a sample looks like."""
    import numpy as np
    from PIL import Image

    ramp = np.tile(np.linspace(0, 255, size, dtype=np.uint8), (size + 8, 1))
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.stack([ramp, np.roll(ramp, 7 * i, axis=1), ramp[:, ::-1]], -1)).save(root / cls / f"{i}.png")


def test_image_folder_options_normalise_crop_and_augment_training_only(tmp_path):
    _images(tmp_path)
    data = load_data(f"{tmp_path}?size=24&crop=20&mean=0.5,0.5,0.5&std=0.25,0.25,0.25")
    assert data.input_shape == (3, 20, 20)
    x, _ = data.val[0]
    assert x.min() < 0  # normalised: (v - 0.5) / 0.25 reaches below zero
    again, _ = data.val[0]
    assert torch.equal(x, again)  # validation is deterministic
    torch.manual_seed(0)
    views = {tuple(data.train[0][0].flatten()[:50].tolist()) for _ in range(6)}
    assert len(views) > 1  # training images are randomly cropped and flipped
    assert data.preprocessing["augment"] is True
    plain = load_data(f"{tmp_path}?size=24&augment=false")
    assert torch.equal(plain.train[0][0], plain.train[0][0])
    with pytest.raises(AutopruneError, match="'std=0,1,1'.*std=R,G,B"):
        load_data(f"{tmp_path}?std=0,1,1")


def _fake_cached_weights(tmp_path, monkeypatch):
    """torchvision's cache with a resnet18 weights file in it (random values): what a user copies in."""
    import torchvision

    from autoprune.load.models import torchvision_weights, weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    w = torchvision_weights("torchvision:resnet18?weights=DEFAULT")
    path = weights_file(w)
    path.parent.mkdir(parents=True)
    torch.manual_seed(1)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, path)
    return state


def test_torchvision_weights_come_from_its_cache_with_their_preprocessing(tmp_path, monkeypatch):
    from autoprune.load.models import model_preprocessing

    state = _fake_cached_weights(tmp_path, monkeypatch)
    model = load_model("torchvision:resnet18?weights=IMAGENET1K_V1")
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    pre = model_preprocessing("torchvision:resnet18?weights=DEFAULT")
    assert (pre["size"], pre["crop"]) == (256, 224) and pre["mean"][0] == pytest.approx(0.485)
    _images(tmp_path / "imgs", size=300)
    data = load_data(str(tmp_path / "imgs"), preprocessing=pre)
    assert data.input_shape == (3, 224, 224) and data.preprocessing["from"].endswith("transforms()")
    from autoprune.load.inputs import resolve_input_shape

    shape = resolve_input_shape(data=str(tmp_path / "imgs"), model="torchvision:resnet18?weights=DEFAULT")
    assert shape == (3, 224, 224)  # space init and profile measure see the weights' crop too
    # transfer learning: the pretrained body, a new 2-class head
    head = load_model("torchvision:resnet18?weights=DEFAULT&num_classes=2")
    assert head.fc.out_features == 2 and torch.equal(head.conv1.weight, state["conv1.weight"])


def test_weights_file_loads_into_any_spec_and_the_checkpoint_records_it(tmp_path):
    from autoprune.load.models import save_checkpoint

    src = load_model("tests.helpers:tiny_resnet")
    with torch.no_grad():
        src.fc.weight.add_(1.0)
    path = tmp_path / "mine.pt"
    torch.save(src.state_dict(), path)
    model = load_model("tests.helpers:tiny_resnet", weights=path)
    assert torch.equal(model.fc.weight, src.fc.weight)
    ckpt = save_checkpoint(model, tmp_path / "out.pt", arch="tests.helpers:tiny_resnet", plan=None,
                           input_shape=(1, 8, 8), weights=str(path))
    assert torch.load(ckpt, weights_only=True)["weights"] == str(path)
    assert torch.equal(load_model(str(ckpt)).fc.weight, src.fc.weight)
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(AutopruneError, match="do not fit model"):
        load_model("tests.helpers:tiny_resnet", weights=wrong)


def test_timm_pretrained_weights_missing_from_the_cache_are_one_line_even_after_the_hub_was_imported(
        tmp_path, monkeypatch):
    """huggingface_hub reads HF_HUB_OFFLINE once, at import: imported first (as timm does), it would
    try the network. The load is offline all the same, says where the weights must come from, and
    leaves the hub's setting as it found it."""
    from huggingface_hub import constants as hub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-cache" / "hub"))
    before = hub.HF_HUB_OFFLINE
    with pytest.raises(AutopruneError, match="timm's pretrained weights are not in its cache .*autoprune downloads "
                                             "nothing") as err:
        load_model("timm:resnet18?pretrained=true")
    assert "LocalEntryNotFoundError" in str(err.value) or "OfflineModeIsEnabled" in str(err.value), err.value
    assert hub.HF_HUB_OFFLINE == before
