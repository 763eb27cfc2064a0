"""Which BLAS and which CPU kernels the PyTorch in this process runs on.

A comparison against a crippled PyTorch is worse than none: Debian's
python3-torch alone runs on the reference BLAS (libblas3), about ten times
slower than on OpenBLAS (gMLP at 49 images/s instead of about 650), so the
harness refuses to print ratios against it (REFERENCE_BLAS_ADVICE says what
to install). Found from the libraries the process has mapped once torch has
multiplied two matrices, from torch's build configuration where the BLAS is
linked in, and from oneDNN's own report of the instruction set it uses.
"""
import ctypes
import os

REFERENCE_BLAS_ADVICE = (
    "PyTorch runs on the reference BLAS ({lib}), about 10x slower than on OpenBLAS: ratios against "
    "it would mean nothing. Install OpenBLAS (Debian: apt-get install libopenblas0-pthread), then "
    "check that `readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3` names openblas.")

# oneDNN's dnnl_cpu_isa_t (oneDNN 2.x), as dnnl_get_effective_cpu_isa returns it.
ONEDNN_ISA = {0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0x407: "avx2_vnni", 0x27: "avx512_core",
              0x67: "avx512_core_vnni", 0xE7: "avx512_core_bf16", 0x3E7: "avx512_core_amx"}


def mapped_libraries():
    try:
        with open("/proc/self/maps") as f:
            return sorted({l.split()[-1] for l in f if l.rstrip().endswith((".so", ".so.3")) or ".so." in l})
    except OSError:
        return []


def classify(path):
    """The kind of BLAS a library path is, or None for a library that is none."""
    real = os.path.realpath(path)
    low = real.lower()
    name = os.path.basename(low)
    for kind in ("openblas", "mkl", "blis", "atlas"):
        if kind in low and ("blas" in name or kind in name):
            return kind
    if name.startswith("libblas.so") or name.startswith("libcblas.so"):
        return "reference"  # Debian's alternatives point elsewhere when a fast BLAS is installed
    return None


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def sgemm_provider(libs):
    """The library whose sgemm_ torch's own calls reach: the symbol looked up
    from libtorch_cpu (its dependencies in load order, as the dynamic linker
    bound it), then dladdr names the file. Several BLAS libraries can be
    mapped at once (the reference libblas.so.3 and OpenBLAS through
    liblapack.so.3): only this one does the work."""
    torch_libs = [l for l in libs if os.path.basename(l).startswith("libtorch_cpu")]
    if not torch_libs:
        return ""
    try:
        addr = ctypes.cast(ctypes.CDLL(torch_libs[0]).sgemm_, ctypes.c_void_p).value
        libc = ctypes.CDLL(None)
        info = _DlInfo()
        if addr and libc.dladdr(ctypes.c_void_p(addr), ctypes.byref(info)) and info.dli_fname:
            return os.path.realpath(info.dli_fname.decode())
    except (OSError, AttributeError):
        pass
    return ""


def openblas_config(libs):
    for lib in libs:
        if "openblas" not in os.path.realpath(lib).lower():
            continue
        try:
            fn = ctypes.CDLL(lib).openblas_get_config
            fn.restype = ctypes.c_char_p
            return fn().decode()
        except (OSError, AttributeError):
            continue
    return ""


def onednn_isa(libs):
    for lib in libs:
        if "libdnnl" not in lib and "libmkldnn" not in lib:
            continue
        try:
            fn = ctypes.CDLL(lib).dnnl_get_effective_cpu_isa
            fn.restype = ctypes.c_int
            v = fn()
            return ONEDNN_ISA.get(v, hex(v))
        except (OSError, AttributeError):
            continue
    return ""


def config_value(torch, key):
    for part in torch.__config__.show().replace("\n", ",").split(","):
        part = part.strip().lstrip("- ")
        if part.startswith(key):
            return part.split(":", 1)[-1].split("=", 1)[-1].strip()
    return ""


def blas_info(torch):
    """A dict: blas_kind (openblas, mkl, blis, atlas, reference or unknown),
    blas_library, openblas (its own config string), aten_cpu (the ATen
    kernels' level) and onednn_isa."""
    a = torch.randn(64, 64)
    (a @ a).sum()
    libs = mapped_libraries()
    kind, library = "unknown", sgemm_provider(libs)
    if library:
        kind = classify(library) or "unknown"
    if kind == "unknown":
        built = config_value(torch, "BLAS_INFO").lower()  # a BLAS linked into torch itself
        if built in ("mkl", "open", "openblas", "blis"):
            kind, library = {"open": "openblas"}.get(built, built), "linked into torch"
    return {"blas_kind": kind, "blas_library": library, "openblas": openblas_config(libs),
            "aten_cpu": config_value(torch, "CPU capability usage"), "onednn_isa": onednn_isa(libs)}
