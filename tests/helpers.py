"""Tiny real models for tests; importable by Ray workers (conftest puts the repo on PYTHONPATH)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from autoprune.load.demo import BasicBlock

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (1, 8, 8)  # one 8x8 digit: the input of the demo model and of TinyResNet
TINY_GROUPS = ("stem.0", "block1.conv1", "block2.conv1", "block2.conv2")  # TinyResNet's prunable groups


# The demo's widest groups: at a few ms its latency falls well beyond the noise when they are pruned
# (TinyResNet's 0.2 ms is mostly per-operator overhead, so a budget on it is decided by noise).
DEMO_GROUPS = ("layer2.0.conv2", "layer3.0.conv1", "layer3.0.conv2", "layer3.1.conv1")


def demo_space(path: Path, *, high: float, step: float, groups: tuple[str, ...] = DEMO_GROUPS) -> Path:
    """A search space file over some of the demo's groups (the others kept whole), channels rounded to 8."""
    path.write_text("round_to: 8\ngroups:\n" + "".join(f"  {g}: {{low: 0.0, high: {high}, step: {step}}}\n"
                                                      for g in groups))
    return path


def tiny_space(path: Path, *, high: float, step: float) -> Path:
    """A search space file over TinyResNet's groups, channels rounded to 8."""
    path.write_text("round_to: 8\ngroups:\n" + "".join(f"  {g}: {{low: 0.0, high: {high}, step: {step}}}\n"
                                                      for g in TINY_GROUPS))
    return path


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ``autoprune ARGS`` in this process, through the console script's own entry point
    (``autoprune.cli.main``): the same output and exit code, without an interpreter's start-up."""
    from autoprune.cli import main

    out, err = io.StringIO(), io.StringIO()
    before = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["autoprune", *args], code, out.getvalue(), err.getvalue())


def cli_process(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``autoprune ARGS`` in a fresh interpreter, as a user would: for the few tests that need one."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "autoprune.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout, check=False)


def search_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A tiny search in a driver process of its own, as a second person or job would start it."""
    # its own process group: its Ray processes can be cleaned up after its driver is killed
    profile = ROOT / "tests" / "profiles" / "tiny-single.yaml"
    return subprocess.Popen([sys.executable, "-m", "autoprune.cli", "search", "--budget", "1000ms", "--profile",
                             str(profile), "--finetune-steps", "5", "--seed-plans", "none", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, **(env or {})})


def reap(proc: subprocess.Popen) -> tuple[str, str]:
    """The output of a ``search_process``, once it ended (killed or not), and its Ray processes gone."""
    out, err = proc.communicate(timeout=300)  # a guard against a hang, not a timing
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever Ray processes a killed driver left behind
    except ProcessLookupError:
        pass
    return out, err


class TinyResNet(nn.Module):
    """Stem, one identity block, one projection block, classifier: residual coupling in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = BasicBlock(16, 16, 1)
        self.block2 = BasicBlock(16, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.block2(self.block1(self.stem(x)))), 1))


def _training_step(model: nn.Module) -> bool:
    # A fine-tune step; BN recalibration also runs in train mode, but without gradients.
    return model.training and torch.is_grad_enabled()


class FlakyResNet(TinyResNet):
    """Fails while training when its stem group was pruned hard: an injected trial fault."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _training_step(self) and self.stem[0].out_channels <= 8:
            raise RuntimeError("injected fault: stem too narrow")
        return super().forward(x)


def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    return TinyResNet().eval()


def flaky_resnet() -> nn.Module:
    torch.manual_seed(0)
    return FlakyResNet().eval()


class UntrainableResNet(TinyResNet):
    """Raises on every training step, whatever the plan: a search whose every trial fails."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _training_step(self):
            raise RuntimeError("injected fault: this model cannot train")
        return super().forward(x)


def untrainable_resnet() -> nn.Module:
    torch.manual_seed(0)
    return UntrainableResNet().eval()


def labels_one_to_ten_data():
    """Digits-shaped data labelled 1..10, as if counted from one: the 10-class TinyResNet cannot score 10."""
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 8, 8, generator=g), torch.arange(96) % 10 + 1
    return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])


def broken_data():
    return "not a pair of datasets"


class FaultyResNet(TinyResNet):
    """One injected fault per group pruned to half (tests/test_faults.py):

    - ``block2.conv1`` → the ONNX export fails;
    - ``stem.0`` → training raises;
    - ``block2.conv2`` → the trial's worker process is killed (SIGKILL) while training;
    - ``block1.conv1`` → the loss becomes NaN.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export() and self.block2.conv1.out_channels <= 16:
            raise RuntimeError("injected export fault")
        if _training_step(self) and self.stem[0].out_channels <= 8:
            raise RuntimeError("injected fault: stem too narrow")
        if _training_step(self) and self.block2.conv2.out_channels <= 16:
            os.kill(os.getpid(), signal.SIGKILL)
        out = super().forward(x)
        if _training_step(self) and self.block1.conv1.out_channels <= 8:
            out = out * float("nan")
        return out


def faulty_resnet() -> nn.Module:
    torch.manual_seed(0)
    return FaultyResNet().eval()


def expected_fault(ratios: dict[str, float]) -> str | None:
    """What FaultyResNet does with a plan, in the order the trial meets the faults."""
    if ratios["block2.conv1"] >= 0.5:
        return "export: RuntimeError: injected export fault"
    if ratios["stem.0"] >= 0.5:
        return "finetune: RuntimeError: injected fault"
    if ratios["block2.conv2"] >= 0.5:
        return "worker: the trial's process died"
    if ratios["block1.conv1"] >= 0.5:
        return "finetune: NonFiniteLoss"
    return None


class TinyMobile(nn.Module):
    """Stem, an inverted residual (1x1 expand, 3x3 depthwise, 1x1 project, identity add), a grouped
    conv, classifier: depthwise and grouped coupling in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(16, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(48, 48, 3, 1, 1, groups=48, bias=False), nn.BatchNorm2d(48), nn.ReLU())
        self.project = nn.Sequential(nn.Conv2d(48, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.project(self.dw(self.expand(x)))
        return self.fc(torch.flatten(self.pool(self.head(x)), 1))


def tiny_mobile() -> nn.Module:
    torch.manual_seed(0)
    return TinyMobile().eval()


class HeadAttention(nn.Module):
    """Attention shaped like timm's: fused qkv, ``num_heads`` and ``head_dim`` read in forward."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class TinyViT(nn.Module):
    """Patch embedding, two pre-norm blocks (heads + MLP), class token, linear head: a ViT in miniature."""

    def __init__(self, dim: int = 32, heads: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, dim, 4, 4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.blocks = nn.ModuleList()
        for _ in range(2):
            self.blocks.append(nn.ModuleDict({
                "norm1": nn.LayerNorm(dim), "attn": HeadAttention(dim, heads), "norm2": nn.LayerNorm(dim),
                "mlp": nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))}))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        for b in self.blocks:
            x = x + b["attn"](b["norm1"](x))
            x = x + b["mlp"](b["norm2"](x))
        return self.head(self.norm(x)[:, 0])


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return TinyViT().eval()


class TinyFCN(nn.Module):
    """A fully convolutional segmenter: encoder, 1x1 classifier, upsampled back to the input size."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.classifier = nn.Conv2d(32, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.classifier(self.encoder(x)), size=x.shape[-2:], mode="bilinear",
                                         align_corners=False)


def tiny_fcn() -> nn.Module:
    torch.manual_seed(0)
    return TinyFCN().eval()


def _shapes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 16x16 images of a bright square (class 1) and a dim one (class 2) on background 0."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 16, 16, generator=gen) * 0.3
    y = torch.zeros(n, 16, 16, dtype=torch.long)
    for i in range(n):
        for cls, level in ((1, 2.0), (2, -2.0)):
            r, c = torch.randint(0, 11, (2,), generator=gen).tolist()
            x[i, 0, r:r + 5, c:c + 5] += level
            y[i, r:r + 5, c:c + 5] = cls
    return x, y


def segmentation_data():
    """Synthetic masks for TinyFCN: (train, val) datasets of (image, per-pixel class) pairs."""
    from torch.utils.data import TensorDataset

    return TensorDataset(*_shapes(256, seed=0)), TensorDataset(*_shapes(64, seed=1))


def miou(model: nn.Module, loader) -> float:
    """Mean intersection over union over the classes present: a segmentation metric, higher is better."""
    inter = union = None
    for x, y in loader:
        pred = model(x).argmax(1)
        k = int(model(x).shape[1])
        p = nn.functional.one_hot(pred, k).bool()
        t = nn.functional.one_hot(y, k).bool()
        i, u = (p & t).sum((0, 1, 2)).double(), (p | t).sum((0, 1, 2)).double()
        inter, union = (i, u) if inter is None else (inter + i, union + u)
    present = union > 0
    return float((inter[present] / union[present]).mean())


def pixel_cross_entropy(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out, target)


class _DriverSignalling(TinyResNet):
    """Base of the models below: built in the search's driver (``load_model`` runs there; trials get
    pickled copies), they remember its pid and a marker directory named by the ``marker_env``
    variable; they act only when that directory exists."""

    marker_env = ""

    def __init__(self) -> None:
        super().__init__()
        self.driver = os.getpid()
        self.marker = Path(os.environ.get(self.marker_env, "/nonexistent"))


class InterruptingResNet(_DriverSignalling):
    """Presses Ctrl-C on the search that loaded it (SIGINT to the driver, once), when the trial with
    the plan it was told of starts training: an interrupted run at a known point, without timing."""

    marker_env = "AUTOPRUNE_TEST_INTERRUPT"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the third plan's stem (see tests/test_resume.py) is the only one pruned to 8 channels
        if _training_step(self) and self.stem[0].out_channels == 8 and self.marker.is_dir():
            try:
                (self.marker / "pressed").touch(exist_ok=False)  # once: the resumed run goes on
                os.kill(self.driver, signal.SIGINT)
            except FileExistsError:
                pass
        return super().forward(x)


def interrupting_resnet() -> nn.Module:
    torch.manual_seed(0)
    return InterruptingResNet().eval()


class GatheringResNet(_DriverSignalling):
    """In a trial, holds its first forward pass until ``gather`` trials have reached theirs (one marker
    file per trial process): trials that must overlap do, however fast they are. The wait is before
    the latency measurement and the fine-tune, so it holds no node lock; never longer than a minute."""

    gather = 3
    marker_env = "AUTOPRUNE_TEST_GATHER"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if os.getpid() != self.driver and self.marker.is_dir() and not getattr(self, "_gathered", False):
            import time

            self._gathered = True
            (self.marker / str(os.getpid())).touch()
            deadline = time.monotonic() + 60
            while len(list(self.marker.iterdir())) < self.gather and time.monotonic() < deadline:
                time.sleep(0.05)
        return super().forward(x)


def gathering_resnet() -> nn.Module:
    torch.manual_seed(0)
    return GatheringResNet().eval()


class KillingResNet(_DriverSignalling):
    """Kills the search that loaded it (SIGKILL to the driver, as ``kill -9`` would) when the second
    trial starts training: a dead driver at a known point. Counts trials in a marker directory."""

    marker_env = "AUTOPRUNE_TEST_KILL"
    sends = signal.SIGKILL

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _training_step(self) and self.marker.is_dir() and not getattr(self, "_counted", False):
            self._counted = True
            (self.marker / f"{os.getpid()}-{id(self)}").touch()
            if len(list(self.marker.iterdir())) == 2:
                os.kill(self.driver, self.sends)
        return super().forward(x)


class TerminatingResNet(KillingResNet):
    """The same, with SIGTERM (a batch scheduler's or a container's stop, ``timeout``)."""

    marker_env = "AUTOPRUNE_TEST_TERM"
    sends = signal.SIGTERM


def terminating_resnet() -> nn.Module:
    torch.manual_seed(0)
    return TerminatingResNet().eval()


def killing_resnet() -> nn.Module:
    torch.manual_seed(0)
    return KillingResNet().eval()
