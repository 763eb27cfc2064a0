"""Kiln's model zoo written in PyTorch, layer for layer and name for name.

Each model's state_dict names and parameter count match Kiln's (layers/zoo.go),
so the side-by-side benchmark compares the same architecture.
"""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin, cout, k, pad):
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(cin, cout, k, padding=pad, bias=False)),
        ("bn", nn.BatchNorm2d(cout)),
        ("relu", nn.ReLU()),
    ]))


class Inception(nn.Module):
    def __init__(self, cin, o1, r3, o3, r5, o5, pp):
        super().__init__()
        self.branch1 = conv_bn_relu(cin, o1, 1, 0)
        self.branch2 = nn.Sequential(conv_bn_relu(cin, r3, 1, 0), conv_bn_relu(r3, o3, 3, 1))
        self.branch3 = nn.Sequential(conv_bn_relu(cin, r5, 1, 0), conv_bn_relu(r5, o5, 5, 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn_relu(cin, pp, 1, 0))
        self.out_channels = o1 + o3 + o5 + pp

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class ChannelAttention(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        h = max(c // r, 1)
        self.fc1 = nn.Linear(c, h, bias=False)
        self.fc2 = nn.Linear(h, c, bias=False)

    def forward(self, x):
        avg = x.mean((2, 3))
        mx = x.amax((2, 3))
        att = torch.sigmoid(self.fc2(F.relu(self.fc1(avg))) + self.fc2(F.relu(self.fc1(mx))))
        return x * att[:, :, None, None]


class SpatialAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x):
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(pooled))


def cbam(c, r):
    return nn.Sequential(OrderedDict([("channel", ChannelAttention(c, r)), ("spatial", SpatialAttention())]))


class SpatialGatingUnit(nn.Module):
    def __init__(self, tokens, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(tokens, tokens)
        nn.init.uniform_(self.proj.weight, -1e-3, 1e-3)
        nn.init.ones_(self.proj.bias)

    def forward(self, z):
        u, v = z.chunk(2, dim=-1)
        v = self.norm(v)
        v = torch.matmul(self.proj.weight, v) + self.proj.bias[:, None]
        return u * v


class GMLPBlock(nn.Module):
    def __init__(self, tokens, d, ffn):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.proj_in = nn.Linear(d, ffn)
        self.act = nn.GELU()
        self.sgu = SpatialGatingUnit(tokens, ffn // 2)
        self.proj_out = nn.Linear(ffn // 2, d)

    def forward(self, x):
        return x + self.proj_out(self.sgu(self.act(self.proj_in(self.norm(x)))))


class PatchEmbed(nn.Module):
    def __init__(self, cin, p, d):
        super().__init__()
        self.proj = nn.Conv2d(cin, d, p, stride=p)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TokenMean(nn.Module):
    def forward(self, x):
        return x.mean(1)


def lenet(c, h, w, out):
    flat = 16 * ((h // 2 - 4) // 2) * ((w // 2 - 4) // 2)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(c, 6, 5, padding=2)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(6, 16, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(flat, 120)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(120, 84)), ("relu4", nn.ReLU()),
        ("fc3", nn.Linear(84, out)),
    ]))


def mlp(c, h, w, out):
    return nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(c * h * w, 256)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(256, 128)), ("relu2", nn.ReLU()),
        ("fc3", nn.Linear(128, out)),
    ]))


def cnn(c, h, w, out):
    layers = OrderedDict()
    cin = c
    for i, cout in enumerate([32, 32, 64, 64]):
        n = str(i + 1)
        layers["conv" + n] = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        layers["bn" + n] = nn.BatchNorm2d(cout)
        layers["relu" + n] = nn.ReLU()
        if i % 2 == 1:
            layers["pool" + str(i // 2 + 1)] = nn.MaxPool2d(2)
        cin = cout
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(64 * (h // 4) * (w // 4), 128)
    layers["relu5"] = nn.ReLU()
    layers["dropout"] = nn.Dropout(0.3)
    layers["fc2"] = nn.Linear(128, out)
    return nn.Sequential(layers)


def inception(c, h, w, out):
    i1 = Inception(32, 16, 16, 24, 4, 8, 8)
    i2 = Inception(i1.out_channels, 32, 24, 48, 8, 16, 16)
    return nn.Sequential(OrderedDict([
        ("stem", conv_bn_relu(c, 32, 3, 1)), ("pool1", nn.MaxPool2d(2)),
        ("inception1", i1), ("inception2", i2), ("pool2", nn.MaxPool2d(2)),
        ("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
        ("fc", nn.Linear(i2.out_channels, out)),
    ]))


def cbam_net(c, h, w, out):
    inc = Inception(32, 16, 16, 32, 8, 8, 8)
    return nn.Sequential(OrderedDict([
        ("stem", conv_bn_relu(c, 32, 3, 1)), ("cbam1", cbam(32, 8)), ("pool1", nn.MaxPool2d(2)),
        ("inception", inc), ("conv", conv_bn_relu(inc.out_channels, 64, 3, 1)), ("cbam2", cbam(64, 8)),
        ("pool2", nn.MaxPool2d(2)), ("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
        ("fc", nn.Linear(64, out)),
    ]))


def gmlp(c, h, w, out, width=128, depth=4):
    tokens = (h // 4) * (w // 4)
    return nn.Sequential(OrderedDict([
        ("patch", PatchEmbed(c, 4, width)),
        ("blocks", nn.Sequential(*[GMLPBlock(tokens, width, 2 * width) for _ in range(depth)])),
        ("norm", nn.LayerNorm(width)), ("pool", TokenMean()), ("head", nn.Linear(width, out)),
    ]))


ZOO = {"lenet": lenet, "mlp": mlp, "cnn": cnn, "inception": inception, "cbam": cbam_net, "gmlp": gmlp}


def build(name, c, h, w, out=10):
    return ZOO[name](c, h, w, out)


def autocast(device_type, precision):
    """The context a training step's forward runs in for Kiln's --precision:
    PyTorch's autocast for bf16, what a PyTorch user trains mixed precision
    with; nothing for fp32."""
    import contextlib
    if precision in (None, "", "fp32"):
        return contextlib.nullcontext()
    if precision != "bf16":
        raise ValueError(f"precision {precision!r}: PyTorch's side runs fp32 or bf16")
    if device_type == "cpu" and not getattr(F.layer_norm, "kiln_fp32", False):
        # PyTorch 1.13's CPU autocast hands layer_norm a bf16 input beside fp32 weights and fails
        # ("expected scalar type BFloat16 but found Float"); PyTorch 2's autocast runs layer_norm
        # in fp32, as Kiln does, so the gMLP runs it so here.
        layer_norm = F.layer_norm

        def fp32_layer_norm(x, *a, **k):
            return layer_norm(x.float(), *a, **k)

        fp32_layer_norm.kiln_fp32 = True
        F.layer_norm = fp32_layer_norm
    return torch.autocast(device_type, dtype=torch.bfloat16)
