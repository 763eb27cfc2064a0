#!/usr/bin/python3
"""Checks that PyTorch loads the LeNet weights Kiln writes and computes Kiln's outputs.

Run with Debian's python3-torch (not needed by Kiln or CI):
    d=$(mktemp -d); KILN_INTEROP_DIR=$d go test -run TestExportLeNetForTorch ./layers
    /usr/bin/python3 scripts/check_torch_interop.py $d
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import LeNet5, load_safetensors  # noqa: E402


def main():
    d = sys.argv[1]
    weights, meta = load_safetensors(os.path.join(d, "lenet_kiln.safetensors"))
    io, _ = load_safetensors(os.path.join(d, "lenet_kiln_io.safetensors"))
    model = LeNet5().float().eval()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()}, strict=True)
    with torch.no_grad():
        logits = model(torch.from_numpy(io["input"].copy()))
    err = (logits - torch.from_numpy(io["logits"].copy())).abs().max().item()
    print(f"strict load_state_dict ok ({len(weights)} tensors, metadata {meta}); max |Δlogits| = {err:.3g}")
    if err > 1e-5:
        sys.exit("logits differ")


if __name__ == "__main__":
    main()
