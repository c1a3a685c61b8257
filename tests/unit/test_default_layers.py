"""Default layers of a Session: the blocks' outputs of a torchvision-style ResNet, conv maps pooled over space."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from geowidgets.probe import default_layers, list_layers
from geowidgets.session import Session


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: conv-bn-relu-conv-bn, identity (or 1x1 conv) shortcut, relu."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision.models.ResNet's layout (stem, four stages, avgpool, dropout, flatten, fc), small widths."""

    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16))
        self.layer3 = nn.Sequential(BasicBlock(16, 16, 2), BasicBlock(16, 16))
        self.layer4 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.dropout(self.avgpool(x))))


def test_resnet_default_layers_are_the_stem_the_stages_and_the_head() -> None:
    model = ResNet()
    names = default_layers(model)
    stages = [name for name, m in model.named_children() if isinstance(m, nn.Sequential)]
    assert stages == ["layer1", "layer2", "layer3", "layer4"]
    assert names == ["maxpool", *stages, "fc"]
    modules = dict(model.named_modules())
    dropped = (nn.Dropout, nn.Flatten, nn.Identity, nn.BatchNorm2d)
    assert not any(isinstance(modules[name], dropped) for name in names)
    # every leaf the old default listed is inside (or is) one of the chosen blocks, or a dropped duplicate
    leaves = [info.name for info in list_layers(model, torch.zeros(1, 3, 32, 32))]
    assert len(leaves) > 3 * len(names)


def test_session_pools_the_default_conv_maps_over_space() -> None:
    torch.manual_seed(0)
    model = ResNet().eval()
    x = torch.randn(12, 3, 32, 32)
    session = Session(model, x, np.arange(12) % 3, k_max=5, device="cpu")
    assert session.layers == default_layers(model)
    assert "pooled by 'mean'" in session.layer_note
    acts = session.activations()
    # reference: the stage's own output, averaged over its spatial positions
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o.clone()))
        for name in ("layer2", "maxpool")
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for name in ("layer2", "maxpool"):
        got = np.asarray(acts[name])
        want = outputs[name].double().mean(dim=(2, 3)).numpy()
        assert got.shape == (12, outputs[name].shape[1])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_named_layers_keep_flattening_unless_asked() -> None:
    model = ResNet().eval()
    x = torch.randn(6, 3, 64, 64)
    flat = Session(model, x, np.arange(6) % 3, layers=["layer4"], k_max=3, device="cpu")
    assert flat.layer_note == ""
    assert np.asarray(flat.activations()["layer4"]).shape == (6, 32 * 2 * 2)
    pooled = Session(model, x, np.arange(6) % 3, layers=["layer4"], k_max=3, device="cpu", pooling="mean")
    assert np.asarray(pooled.activations()["layer4"]).shape == (6, 32)


def test_a_module_list_of_blocks_gives_its_blocks_and_every_one_runs():
    """An encoder whose forward loops over a ModuleList: the list itself never runs, its blocks do."""
    from geowidgets.probe import Probe

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(8, 8), nn.GELU()) for _ in range(2)])

        def forward(self, input_ids, attention_mask=None):
            h = self.emb(input_ids)
            for block in self.blocks:
                h = h + block(h)
            return h

    enc = Encoder()
    assert default_layers(enc) == ["emb", "blocks.0", "blocks.1"]
    batch = {"input_ids": torch.randint(0, 20, (5, 4)), "attention_mask": torch.ones(5, 4, dtype=torch.long)}
    acts = Probe(enc, default_layers(enc), device="cpu", pooling="mean").capture(batch, progress=False)
    assert [tuple(acts[name].shape) for name in acts.layers] == [(5, 8)] * 3


def test_the_note_names_only_the_layers_it_pools() -> None:
    """An MLP's blocks are vectors already: the note must not say they were pooled; a CNN's maps are named."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    session = Session(mlp, torch.randn(10, 4), np.arange(10) % 3, k_max=3, device="cpu")
    assert "pooled" not in session.layer_note and "one vector per sample" in session.layer_note
    cnn = ResNet().eval()
    session = Session(cnn, torch.randn(6, 3, 32, 32), np.arange(6) % 3, k_max=3, device="cpu")
    note = session.layer_note
    assert "pooled by 'mean' (maxpool, layer1, layer2 and 2 more)" in note, note
    assert "fc" not in note.split("pooled by")[1]
