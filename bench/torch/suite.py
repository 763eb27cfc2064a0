#!/usr/bin/python3
"""PyTorch's side of `kiln bench suite`: one measurement per call, as JSON.

The Go harness (bench/suite) drives this script: it starts one process per
measurement with the thread setting under test in the environment
(OPENBLAS_NUM_THREADS, OMP_NUM_THREADS) and --threads for torch.set_num_threads,
reads the last line of standard output (one JSON object) and alternates these
runs with Kiln's. Nothing here decides what is compared; the Go side does.

    suite.py info
    suite.py peak  --device cuda
    suite.py ops   --spec ops.json --threads 2 --seconds 0.3
    suite.py train --spec cases.json --threads 2 --seconds 2
    suite.py tta   --spec tta.json --threads 2 --max-seconds 360

--device cuda runs on torch.cuda (synchronising around every timed region)
and fails with a clear message when torch has no CUDA device.
"""
import argparse
import gzip
import json
import math
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def fail(msg):
    print(json.dumps({"error": msg}))
    sys.exit(3)


def setup(args):
    import torch
    torch.set_num_threads(max(args.threads, 1))
    torch.manual_seed(0)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            fail("torch has no CUDA device (torch.cuda.is_available() is False)")
        dev = torch.device("cuda")
        sync = torch.cuda.synchronize
        # The same arithmetic on both sides: Kiln computes in plain fp32 on
        # the GPU (TF32 only with KILN_TF32=1), while PyTorch lets cuDNN's
        # convolutions use TF32 by default. cuDNN picks its fastest
        # algorithms (benchmark mode); the warm-up steps absorb the search.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    else:
        dev = torch.device("cpu")
        def sync():
            pass
    return torch, dev, sync


def rss_peak_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cmd_info(args):
    import torch
    from blasinfo import blas_info
    out = {"torch": torch.__version__, "python": platform.python_version(),
           "cuda": torch.cuda.is_available(), **blas_info(torch)}
    if out["cuda"]:
        out["cuda_device"] = torch.cuda.get_device_name(0)
        out["cuda_version"] = torch.version.cuda
    print(json.dumps(out))


def timeit(fn, seconds, sync, min_iters=3, warmup=2):
    """Mean seconds per call over at least min_iters calls and `seconds`."""
    for _ in range(warmup):
        fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    sync()
    return (time.perf_counter() - t0) / n, n


# ---- op level ---------------------------------------------------------------

def build_op(torch, dev, op):
    """Returns fn() doing one call of op (forward or backward) on fixed data."""
    import torch.nn.functional as F
    sys.path.insert(0, HERE)
    from models import SpatialGatingUnit
    g = torch.Generator(device="cpu").manual_seed(1)

    def rnd(*shape, grad=False):
        t = torch.randn(*shape, generator=g).to(dev)
        return t.requires_grad_(grad)

    kind, back = op["kind"], op["pass"] == "backward"
    if kind == "gemm":
        a, w = rnd(op["m"], op["k"]), rnd(op["n"], op["k"])
        def f():
            with torch.no_grad():
                return F.linear(a, w)
        return f
    if kind == "conv":
        x = rnd(op["n"], op["cin"], op["h"], op["w"], grad=back and op.get("dx", True))
        w = rnd(op["cout"], op["cin"], op["k"], op["k"], grad=back)
        b = rnd(op["cout"], grad=back) if op.get("bias", True) else None
        call = lambda: F.conv2d(x, w, b, stride=op.get("stride", 1), padding=op.get("pad", 0))
        inputs = [t for t in (x, w, b) if t is not None and t.requires_grad]
    elif kind in ("maxpool", "avgpool"):
        x = rnd(*op["shape"], grad=back)
        k, s, p = op["k"], op.get("stride", 0) or op["k"], op.get("pad", 0)
        if kind == "maxpool":
            call = lambda: F.max_pool2d(x, k, s, p, return_indices=True)[0]
        else:
            call = lambda: F.avg_pool2d(x, k, s, p)
        inputs = [x]
    elif kind == "sgu":
        n, t, d = op["n"], op["t"], op["d"]
        unit = SpatialGatingUnit(t, d).to(dev)
        z = rnd(n, t, 2 * d, grad=back)
        call = lambda: unit(z)
        inputs = [z] + list(unit.parameters())
    elif kind == "batchnorm":
        x = rnd(*op["shape"], grad=back)
        c = op["shape"][1]
        gamma, beta = rnd(c, grad=back), rnd(c, grad=back)
        rm, rv = torch.zeros(c, device=dev), torch.ones(c, device=dev)
        call = lambda: F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=0.1, eps=1e-5)
        inputs = [x, gamma, beta]
    elif kind == "layernorm":
        rows, d = op["rows"], op["dim"]
        x = rnd(rows, d, grad=back)
        gamma, beta = rnd(d, grad=back), rnd(d, grad=back)
        call = lambda: F.layer_norm(x, (d,), gamma, beta, 1e-5)
        inputs = [x, gamma, beta]
    else:
        raise ValueError(f"unknown op kind {kind!r}")
    if not back:
        def f():
            with torch.no_grad():
                return call()
        return f
    out = call()
    dout = torch.randn(out.shape, generator=g).to(dev)
    # Gradients are returned, not accumulated, so each call does the backward
    # kernels alone (Kiln's parameter gradients accumulate, its input gradients
    # are overwritten: the same traffic).
    return lambda: torch.autograd.grad(out, inputs, dout, retain_graph=True)


def cmd_ops(args):
    torch, dev, sync = setup(args)
    spec = json.load(open(args.spec))
    results = []
    for op in spec["ops"]:
        try:
            fn = build_op(torch, dev, op)
            sec, n = timeit(fn, args.seconds, sync)
            results.append({"id": op["id"], "seconds": sec, "calls": n})
        except Exception as e:  # a benchmark that cannot run says why
            results.append({"id": op["id"], "error": f"{type(e).__name__}: {e}"})
    print(json.dumps({"ops": results, "threads": torch.get_num_threads()}))


def cmd_peak(args):
    """The GPU's peaks as torch reaches them: fp32 GEMM (TF32 off) and a
    large device-to-device copy (bytes read + written)."""
    torch, dev, sync = setup(args)
    if dev.type != "cuda":
        fail("peak: only meaningful with --device cuda (the CPU peaks are measured by Kiln itself)")
    torch.backends.cuda.matmul.allow_tf32 = False
    best = 0.0
    for n in (4096, 8192):
        a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
        sec, _ = timeit(lambda: torch.mm(a, b), args.seconds, sync)
        best = max(best, 2 * n ** 3 / sec / 1e9)
    x = torch.empty(256 << 20, device=dev)  # 1 GiB of float32
    y = torch.empty_like(x)
    sec, _ = timeit(lambda: y.copy_(x), args.seconds, sync)
    print(json.dumps({"sgemm_gflops": best, "copy_gbps": 2 * x.numel() * 4 / sec / 1e9,
                      "device": torch.cuda.get_device_name(0)}))


# ---- training steps -----------------------------------------------------------

def cmd_train(args):
    import torch.nn.functional as F
    torch, dev, sync = setup(args)
    sys.path.insert(0, HERE)
    from models import autocast, build
    spec = json.load(open(args.spec))
    results = []
    for case in spec["cases"]:
        h, w, c = (int(v) for v in case["input"].split("x"))
        batch = case["batch"]
        try:
            torch.manual_seed(0)
            model = build(case["model"], c, h, w, case.get("classes", 10)).to(dev).train()
            params = sum(p.numel() for p in model.parameters() if p.requires_grad)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            x = torch.randn(batch, c, h, w).to(dev)
            y = torch.randint(0, case.get("classes", 10), (batch,)).to(dev)

            cast = autocast(dev.type, case.get("precision", "fp32"))

            def step():
                opt.zero_grad(set_to_none=True)
                with cast:
                    loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()

            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            for _ in range(max(args.warmup, 1)):
                step()
            sync()
            n, t0 = 0, time.perf_counter()
            while n < args.steps or time.perf_counter() - t0 < args.seconds:
                step()
                n += 1
            sync()
            el = time.perf_counter() - t0
            r = {"model": case["model"], "input": case["input"], "batch": batch,
                 "precision": case.get("precision", "fp32"), "params": params,
                 "steps": n, "seconds": el, "train_images_per_sec": n * batch / el}
            if dev.type == "cuda":
                r["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
                try:
                    r["train_images_per_sec_graph"] = graphed_ips(torch, F, model, opt, x, y, cast, args)
                except Exception as e:  # the eager figure stands without it
                    r["graph_error"] = f"{type(e).__name__}: {e}"
            results.append(r)
        except Exception as e:
            results.append({"model": case["model"], "input": case["input"], "batch": batch,
                            "error": f"{type(e).__name__}: {e}"})
    print(json.dumps({"cases": results, "rss_peak_bytes": rss_peak_bytes(),
                      "threads": torch.get_num_threads()}))


def graphed_ips(torch, F, model, opt, x, y, cast, args):
    """Images/s of the same step captured whole as a CUDA graph and replayed
    (the torch.cuda.graphs recipe for whole-network capture: warm-up on a
    side stream, then one capture of zero_grad, forward, backward and the
    optimiser step on static tensors)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            with cast:
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(g):
        with cast:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    for _ in range(max(args.warmup, 1)):
        g.replay()
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while n < args.steps or time.perf_counter() - t0 < args.seconds:
        g.replay()
        n += 1
    torch.cuda.synchronize()
    return n * x.shape[0] / (time.perf_counter() - t0)


# ---- time to accuracy -----------------------------------------------------------

IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path):
    for p in (path + ".gz", path):
        if os.path.exists(p):
            opener = gzip.open if p.endswith(".gz") else open
            with opener(p, "rb") as f:
                data = f.read()
            ndim = data[3]
            dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
            return data[4 + 4 * ndim:], dims
    raise FileNotFoundError(f"{path}[.gz]")


def load_split(torch, spec, split):
    import numpy as np
    img, dims = read_idx(os.path.join(spec["dir"], IDX[split][0]))
    lab, _ = read_idx(os.path.join(spec["dir"], IDX[split][1]))
    x = torch.from_numpy(np.frombuffer(img, dtype=np.uint8).reshape(dims[0], 1, dims[1], dims[2]).astype(np.float32))
    y = torch.from_numpy(np.frombuffer(lab, dtype=np.uint8).astype(np.int64))
    x = (x / 255.0 - spec["mean"]) / spec["std"]
    classes = spec.get("classes") or []
    if classes:
        keep = torch.zeros(len(y), dtype=torch.bool)
        relabel = torch.full((256,), -1, dtype=torch.int64)
        for i, k in enumerate(classes):
            keep |= y == k
            relabel[k] = i
        x, y = x[keep], relabel[y[keep]]
    frac = spec.get("subset") or 0
    if 0 < frac < 1:
        g = torch.Generator().manual_seed(spec.get("seed", 1))
        idx = torch.randperm(len(y), generator=g)[:max(1, int(round(frac * len(y))))]
        x, y = x[idx], y[idx]
    return x.contiguous(), y.contiguous()


def one_cycle(base, total, pct=0.3, div=25.0, final_div=1e4):
    """Kiln's onecycle (torch's OneCycleLR, cosine, no momentum cycling)."""
    initial, up, down = base / div, pct * total - 1, total - 1
    final = initial / final_div

    def lr(step):
        step = min(max(step, 0), total - 1)
        cos = lambda a, b, p: b + (a - b) * (1 + math.cos(math.pi * p)) / 2
        return cos(initial, base, step / up) if step <= up else cos(base, final, (step - up) / (down - up))
    return lr


def schedule(cfg, total):
    kind, base = cfg.get("schedule") or "constant", cfg["lr"]
    warm = cfg.get("warmup") or 0
    if kind == "onecycle":
        f = one_cycle(base, total)
    elif kind == "constant":
        f = lambda s: base
    elif kind == "cosine":
        span = max(total - warm - 1, 1)
        f = lambda s: (base * (1 + math.cos(math.pi * max(min(s, total - 1) - warm, 0) / span)) / 2)
    else:
        raise ValueError(f"schedule {kind!r} is not translated to torch in this script")
    if warm:
        return lambda s: f(s) * (min(s, total - 1) + 1) / warm if s < warm else f(s)
    return f


def optimizer(torch, cfg, model):
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # Kiln: biases and norms skip decay
    groups = [{"params": decay, "weight_decay": cfg.get("weight_decay", 0)},
              {"params": no_decay, "weight_decay": 0}]
    name = cfg["optimizer"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg.get("momentum", 0),
                               nesterov=bool(cfg.get("nesterov")))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg["lr"])
    if name == "adam":
        return torch.optim.Adam(groups, lr=cfg["lr"])
    raise ValueError(f"optimizer {name!r} is not translated to torch in this script")


def cmd_tta(args):
    import torch.nn.functional as F
    torch, dev, sync = setup(args)
    sys.path.insert(0, HERE)
    from models import autocast, build
    spec = json.load(open(args.spec))
    cfg = spec["config"]
    xtr, ytr = load_split(torch, spec, "train")
    xte, yte = load_split(torch, spec, "test")
    xtr, ytr, xte, yte = xtr.to(dev), ytr.to(dev), xte.to(dev), yte.to(dev)
    nclass = len(spec.get("classes") or []) or 10
    torch.manual_seed(cfg.get("seed", 1))
    model = build(cfg["model"], 1, 28, 28, nclass).to(dev)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = optimizer(torch, cfg, model)
    batch, epochs = cfg["batch"], cfg["epochs"]
    nb = len(ytr) // batch if cfg.get("drop_last") else (len(ytr) + batch - 1) // batch
    lr_at = schedule(cfg, nb * epochs)
    every = spec.get("loss_every") or max(1, nb // 20)
    smoothing = cfg.get("label_smoothing", 0) or 0
    clip = cfg.get("clip_norm", 0) or 0
    curve, per_epoch = [], []
    wall, step, reached, capped, loss_sum, loss_n = 0.0, 0, False, False, 0.0, 0
    cap = args.max_seconds
    g = torch.Generator().manual_seed(cfg.get("seed", 1))

    def evaluate():
        model.eval()
        correct, loss = 0, 0.0
        with torch.no_grad():
            for i in range(0, len(yte), 1000):
                out = model(xte[i:i + 1000])
                loss += F.cross_entropy(out, yte[i:i + 1000], reduction="sum").item()
                correct += (out.argmax(1) == yte[i:i + 1000]).sum().item()
        model.train()
        return correct / len(yte), loss / len(yte)

    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(ytr), generator=g).to(dev)
        sync()
        t0 = time.perf_counter()
        for b in range(nb):
            if cap > 0 and wall + time.perf_counter() - t0 >= cap:
                capped = True
                break
            idx = perm[b * batch:(b + 1) * batch]
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx], label_smoothing=smoothing)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            step += 1
            loss_sum += loss.item()
            loss_n += 1
            if step % every == 0:
                curve.append({"step": step, "seconds": wall + time.perf_counter() - t0, "loss": loss_sum / loss_n})
                loss_sum, loss_n = 0.0, 0
        sync()
        wall += time.perf_counter() - t0
        acc, tl = evaluate()
        per_epoch.append({"epoch": epoch + 1, "seconds": wall, "test_accuracy": acc, "test_loss": tl})
        print(f"torch epoch {epoch + 1}: test accuracy {acc:.4f} after {wall:.1f} s", file=sys.stderr, flush=True)
        if acc >= spec["target"]:
            reached = True
        if reached or capped:
            break
    print(json.dumps({"params": params, "reached": reached, "capped": capped, "epochs": len(per_epoch), "seconds": wall,
                      "per_epoch": per_epoch, "curve": curve, "steps": step,
                      "images_per_sec": step * batch / max(wall, 1e-9) if nb else 0,
                      "threads": torch.get_num_threads()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["info", "peak", "ops", "train", "tta"])
    ap.add_argument("--spec", help="JSON file describing the work")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--seconds", type=float, default=1.0, help="time each measurement at least this long")
    ap.add_argument("--steps", type=int, default=3, help="train: timed steps (at least)")
    ap.add_argument("--warmup", type=int, default=3, help="train: untimed steps")
    ap.add_argument("--max-seconds", type=float, default=0, help="tta: stop training after this long (0: no cap)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    from blasinfo import give_openblas_its_kernels
    give_openblas_its_kernels()  # before torch loads OpenBLAS; info's blas names the kernels it runs
    try:
        import torch  # noqa: F401
    except ImportError as e:
        fail(f"PyTorch is not importable: {e}")
    {"info": cmd_info, "peak": cmd_peak, "ops": cmd_ops, "train": cmd_train, "tta": cmd_tta}[args.mode](args)


if __name__ == "__main__":
    main()
