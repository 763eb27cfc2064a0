#!/usr/bin/python3
"""Generate Kiln's golden parity files from PyTorch (reference only).

Run from anywhere with Debian's python3-torch:

    /usr/bin/python3 scripts/make_golden.py

Each case becomes testdata/golden/<case>.safetensors holding the op's inputs,
parameters, outputs, a fixed random upstream gradient `dout`, and the
gradients of every input and parameter, all float64, with the op's
hyper-parameters in the metadata. lenet_torch_weights.safetensors is the
float32 state_dict of the LeNet-5 case, the file "PyTorch wrote" that Kiln
must load.

There is no Python safetensors package here, so the format is written by hand
(json + struct + numpy bytes), exactly as Kiln's engine/safetensors writes it:
metadata first, tensors sorted by name, header padded with spaces to a
multiple of 8 bytes. Every case seeds its own RNG, so the output is
deterministic run after run on one machine and adding a case changes no other
file. After writing, the script reads every file back and checks it, and
reloads the float32 LeNet weights into a fresh model to reproduce the logits.
"""

import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "testdata", "golden")

DTYPES = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32"}
NP_OF = {"F64": "<f8", "F32": "<f4"}

written = {}  # file name -> (tensors as numpy, metadata) for the read-back check


def save_safetensors(path, tensors, meta):
    """Write tensors (name -> torch.Tensor, float32/float64) and meta (str -> str)."""
    arrays = {}
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype == torch.float64:
            a = t.numpy().astype("<f8")
        elif t.dtype == torch.float32:
            a = t.numpy().astype("<f4")
        else:
            raise TypeError(f"{name}: dtype {t.dtype} not float32/float64")
        arrays[name] = a
    header = {}
    if meta:
        header["__metadata__"] = {k: str(meta[k]) for k in sorted(meta)}
    offset = 0
    for name, a in arrays.items():
        header[name] = {
            "dtype": DTYPES[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + a.nbytes],
        }
        offset += a.nbytes
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for a in arrays.values():
            f.write(a.tobytes())
    os.replace(tmp, path)
    written[os.path.basename(path)] = (arrays, dict(header.get("__metadata__", {})))


def load_safetensors(path):
    """Read a safetensors file of F32/F64 tensors into numpy arrays."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(body[b:e], dtype=NP_OF[info["dtype"]]).reshape(info["shape"])
    return out, meta


def save(case, tensors, meta):
    meta = dict(meta)
    meta["generator"] = "scripts/make_golden.py"
    meta["torch"] = torch.__version__
    save_safetensors(os.path.join(OUT, case + ".safetensors"), tensors, meta)


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def pair(v):
    return f"{v[0]},{v[1]}" if isinstance(v, (tuple, list)) else f"{v},{v}"


def run_module(m, x):
    """Forward m on a leaf copy of x, backward a random dout; returns tensors."""
    x = x.clone().requires_grad_(True)
    out = m(x)
    dout = rand(*out.shape)
    out.backward(dout)
    return x, out, dout


# --- Convolution -------------------------------------------------------------

CONV_CASES = [
    # name, N, Cin, H, W, Cout, kernel, stride, padding, dilation, groups, bias
    ("conv2d_stride2_pad1", 2, 3, 7, 5, 4, 3, 2, 1, 1, 1, True),
    ("conv2d_dilation2", 2, 3, 7, 6, 5, 3, 1, 1, 2, 1, True),
    ("conv2d_groups2_nobias", 1, 4, 6, 5, 6, 3, 1, 1, 1, 2, False),
    ("conv2d_rect", 2, 3, 5, 7, 2, (3, 2), (2, 1), (1, 0), (1, 2), 1, True),
    ("conv2d_pointwise", 2, 5, 3, 4, 3, 1, 1, 0, 1, 1, True),
]


def conv_cases():
    for seed, (name, n, cin, h, w, cout, k, s, p, d, g, bias) in enumerate(CONV_CASES, 100):
        torch.manual_seed(seed)
        m = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias).double()
        with torch.no_grad():
            m.weight.copy_(rand(*m.weight.shape) * 0.5)
            if bias:
                m.bias.copy_(rand(cout))
        x, out, dout = run_module(m, rand(n, cin, h, w))
        t = {"x": x, "weight": m.weight, "out": out, "dout": dout, "dx": x.grad, "dweight": m.weight.grad}
        if bias:
            t["bias"], t["dbias"] = m.bias, m.bias.grad
        save(name, t, {
            "op": "conv2d", "kernel": pair(k), "stride": pair(s), "padding": pair(p),
            "dilation": pair(d), "groups": str(g), "bias": str(bias).lower(),
        })


# --- Pooling -----------------------------------------------------------------

def pool_cases():
    cases = [
        ("maxpool2d_k3s2p1", "maxpool2d", (2, 3, 7, 5), 3, 2, 1),
        ("maxpool2d_k2", "maxpool2d", (2, 3, 6, 7), 2, 2, 0),
        ("avgpool2d_k3s2p1", "avgpool2d", (2, 3, 7, 5), 3, 2, 1),
    ]
    for seed, (name, op, shape, k, s, p) in enumerate(cases, 200):
        torch.manual_seed(seed)
        if op == "maxpool2d":
            m = nn.MaxPool2d(k, stride=s, padding=p)
            extra = {}
        else:
            m = nn.AvgPool2d(k, stride=s, padding=p, count_include_pad=True)
            extra = {"count_include_pad": "true"}
        x, out, dout = run_module(m, rand(*shape))
        save(name, {"x": x, "out": out, "dout": dout, "dx": x.grad}, {
            "op": op, "kernel": pair(k), "stride": pair(s), "padding": pair(p),
            "ceil_mode": "false", **extra,
        })
    torch.manual_seed(210)
    x, out, dout = run_module(nn.AdaptiveAvgPool2d(1), rand(2, 5, 3, 7))
    save("global_avgpool", {"x": x, "out": out, "dout": dout, "dx": x.grad},
         {"op": "adaptive_avg_pool2d", "output_size": "1,1"})


# --- Normalisation -----------------------------------------------------------

def batchnorm_cases():
    for seed, training in ((300, True), (301, False)):
        torch.manual_seed(seed)
        c = 5
        m = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1).double()
        with torch.no_grad():
            m.weight.copy_(1 + 0.5 * rand(c))
            m.bias.copy_(rand(c))
            m.running_mean.copy_(rand(c))
            m.running_var.copy_(0.5 + torch.rand(c, dtype=torch.float64))
        rm_in, rv_in = m.running_mean.clone(), m.running_var.clone()
        m.train(training)
        x, out, dout = run_module(m, 2 * rand(3, c, 4, 3) + 0.7)
        t = {"x": x, "weight": m.weight, "bias": m.bias, "out": out, "dout": dout,
             "dx": x.grad, "dweight": m.weight.grad, "dbias": m.bias.grad}
        if training:
            t.update({"running_mean_in": rm_in, "running_var_in": rv_in,
                      "running_mean": m.running_mean, "running_var": m.running_var})
        else:
            t.update({"running_mean": m.running_mean, "running_var": m.running_var})
        save("batchnorm2d_" + ("train" if training else "eval"), t, {
            "op": "batch_norm2d", "eps": "1e-05", "momentum": "0.1",
            "training": str(training).lower(),
            "running_var": "unbiased (N*H*W-1 denominator) in the update",
        })


def layernorm_case():
    torch.manual_seed(310)
    d = 7
    m = nn.LayerNorm(d, eps=1e-5).double()
    with torch.no_grad():
        m.weight.copy_(1 + 0.5 * rand(d))
        m.bias.copy_(rand(d))
    x, out, dout = run_module(m, 1.5 * rand(3, 4, d) - 0.3)
    save("layernorm", {"x": x, "weight": m.weight, "bias": m.bias, "out": out, "dout": dout,
                       "dx": x.grad, "dweight": m.weight.grad, "dbias": m.bias.grad},
         {"op": "layer_norm", "normalized_shape": str(d), "eps": "1e-05"})


# --- Spatial gating unit (gMLP) ----------------------------------------------

class SpatialGatingUnit(nn.Module):
    def __init__(self, d, t):
        super().__init__()
        self.norm = nn.LayerNorm(d, eps=1e-5)
        self.proj = nn.Module()
        self.proj.weight = nn.Parameter(torch.empty(t, t))
        self.proj.bias = nn.Parameter(torch.empty(t))

    def forward(self, z):
        u, v = z.chunk(2, dim=-1)
        vn = self.norm(v)
        vm = torch.einsum("ts,nsd->ntd", self.proj.weight, vn) + self.proj.bias[None, :, None]
        return u * vm


def sgu_case():
    torch.manual_seed(400)
    n, t, d = 2, 6, 5
    m = SpatialGatingUnit(d, t).double()
    with torch.no_grad():
        m.norm.weight.copy_(1 + 0.5 * rand(d))
        m.norm.bias.copy_(0.5 * rand(d))
        m.proj.weight.copy_(rand(t, t) / t ** 0.5)
        m.proj.bias.copy_(1 + 0.5 * rand(t))
    z, out, dout = run_module(m, rand(n, t, 2 * d))
    ts = {"z": z, "out": out, "dout": dout, "dz": z.grad}
    for name, p in m.named_parameters():
        ts[name] = p
        ts["grad." + name] = p.grad
    save("sgu", ts, {"op": "spatial_gating_unit", "eps": "1e-05", "N": str(n), "T": str(t), "D": str(d),
                     "definition": "u,v=z.chunk(2,-1); out=u*(einsum('ts,nsd->ntd',W,LayerNorm(v))+b[None,:,None])"})


# --- Loss --------------------------------------------------------------------

def cross_entropy_cases():
    for seed, (name, eps) in enumerate((("cross_entropy_smooth0.1", 0.1), ("cross_entropy", 0.0)), 500):
        torch.manual_seed(seed)
        n, k = 5, 7
        logits = (2 * rand(n, k)).requires_grad_(True)
        labels = torch.randint(0, k, (n,))
        loss = F.cross_entropy(logits, labels, label_smoothing=eps, reduction="mean")
        loss.backward()
        save(name, {"logits": logits, "labels": labels.double(), "loss": loss, "dlogits": logits.grad},
             {"op": "softmax_cross_entropy", "label_smoothing": str(eps), "reduction": "mean",
              "dlogits": "gradient of the mean loss (upstream gradient 1)"})


# --- LeNet-5 -----------------------------------------------------------------

class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


LENET_LABELS = [3, 7, 0, 9]


def lenet_case():
    torch.manual_seed(600)
    m32 = LeNet5()  # PyTorch default init, in float32
    save_safetensors(os.path.join(OUT, "lenet_torch_weights.safetensors"), m32.state_dict(),
                     {"format": "pt", "model": "LeNet-5 (see testdata/golden/README.md)"})
    m = LeNet5().double()
    m.load_state_dict({k: v.double() for k, v in m32.state_dict().items()})
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    labels = torch.tensor(LENET_LABELS)
    logits = m(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    ts = {"input": x, "labels": labels.double(), "logits": logits, "loss": loss}
    for name, p in m.named_parameters():
        ts[name] = p
        ts["grad." + name] = p.grad
    save("lenet", ts, {"model": "LeNet-5", "loss": "cross_entropy mean, no smoothing",
                       "weights": "float32 PyTorch default init (seed 600) widened to float64"})


# --- Read-back checks ----------------------------------------------------------

def verify():
    for fname, (arrays, meta) in sorted(written.items()):
        got, got_meta = load_safetensors(os.path.join(OUT, fname))
        assert got_meta == meta, fname
        assert sorted(got) == sorted(arrays), fname
        for k, a in arrays.items():
            assert got[k].dtype == a.dtype and got[k].shape == a.shape, (fname, k)
            assert np.array_equal(got[k], a), (fname, k)
    # The float32 weights reproduce the golden logits in a fresh float64 model.
    w, _ = load_safetensors(os.path.join(OUT, "lenet_torch_weights.safetensors"))
    g, _ = load_safetensors(os.path.join(OUT, "lenet.safetensors"))
    m = LeNet5().double()
    m.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in w.items()})
    logits = m(torch.from_numpy(g["input"].copy())).detach().numpy()
    assert np.array_equal(logits, g["logits"]), np.abs(logits - g["logits"]).max()
    for k, v in w.items():
        assert np.array_equal(v.astype(np.float64), g[k]), k
    # The float32 model gives the same logits up to float32 rounding.
    m32 = LeNet5()
    m32.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w.items()})
    l32 = m32(torch.from_numpy(g["input"].astype(np.float32))).detach().numpy()
    err = np.abs(l32 - g["logits"]).max()
    assert err < 1e-4, err
    loss = F.cross_entropy(torch.from_numpy(logits), torch.tensor(LENET_LABELS)).item()
    assert loss == g["loss"].item(), (loss, g["loss"])
    total = 0
    for fname in sorted(written):
        size = os.path.getsize(os.path.join(OUT, fname))
        total += size
        print(f"{size:9d}  {fname}")
    print(f"{total:9d}  total; LeNet logits reproduced from the float32 weights "
          f"(float32 model within {err:.1e})")


def main():
    torch.set_num_threads(1)  # one fixed reduction order
    os.makedirs(OUT, exist_ok=True)
    conv_cases()
    pool_cases()
    batchnorm_cases()
    layernorm_case()
    sgu_case()
    cross_entropy_cases()
    lenet_case()
    verify()


if __name__ == "__main__":
    sys.exit(main())
