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
import subprocess
import sys

REFERENCE_BLAS_ADVICE = (
    "PyTorch runs on the reference BLAS ({lib}), about 10x slower than on OpenBLAS: ratios against "
    "it would mean nothing. Install OpenBLAS (Debian: apt-get install libopenblas0-pthread), then "
    "check that `readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3` names openblas.")

# oneDNN's dnnl_cpu_isa_t (oneDNN 2.x), as dnnl_get_effective_cpu_isa returns it.
ONEDNN_ISA = {0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0x407: "avx2_vnni", 0x27: "avx512_core",
              0x67: "avx512_core_vnni", 0xE7: "avx512_core_bf16", 0x3E7: "avx512_core_amx"}


# OpenBLAS's kernel sets, by the widest instructions they use: a DYNAMIC_ARCH
# build picks one from its CPUID table when it loads, and falls back to
# Prescott (SSE3, a third of the speed) on a CPU newer than the table:
# OpenBLAS 0.3.21 on an Emerald Rapids Xeon (family 6 model 207).
OPENBLAS_CORE_RANK = {"Haswell": 1, "Zen": 1, "SkylakeX": 2, "Cooperlake": 2, "SapphireRapids": 2}


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def widest_openblas_core(flags):
    """The OpenBLAS kernel set for the widest instructions the CPU has, and its rank."""
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return ("Cooperlake" if "avx512_bf16" in flags else "SkylakeX"), 2
    if {"avx2", "fma"} <= flags:
        return "Haswell", 1
    return "", 0


def openblas_core_probe(lib="/usr/lib/x86_64-linux-gnu/libblas.so.3"):
    """The kernel set OpenBLAS picks in a fresh process, or "" where the BLAS
    there is no OpenBLAS."""
    code = ("import ctypes,sys\n"
            "f=ctypes.CDLL(sys.argv[1]).openblas_get_corename\n"
            "f.restype=ctypes.c_char_p\n"
            "print(f().decode())")
    try:
        r = subprocess.run([sys.executable, "-c", code, os.path.realpath(lib)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def give_openblas_its_kernels():
    """Sets OPENBLAS_CORETYPE, before torch loads, where OpenBLAS would pick
    kernels narrower than the CPU runs (unless it is set already: --isa
    avx2 sets it), and returns a line that says so, or ""."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return ""
    want, rank = widest_openblas_core(cpu_flags())
    picked = openblas_core_probe()
    if not want or not picked or OPENBLAS_CORE_RANK.get(picked, 0) >= rank:
        return ""
    os.environ["OPENBLAS_CORETYPE"] = want
    return (f"OpenBLAS picks its {picked} kernels on this CPU (one it does not know); PyTorch runs with "
            f"OPENBLAS_CORETYPE={want}, the widest this CPU has")


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


def openblas_string(libs, fn_name):
    """What the loaded OpenBLAS's fn_name() returns: openblas_get_config (its
    build) or openblas_get_corename (the kernel set it runs, in
    OPENBLAS_CORETYPE's names); "" without OpenBLAS."""
    for lib in libs:
        if "openblas" not in os.path.realpath(lib).lower():
            continue
        try:
            fn = getattr(ctypes.CDLL(lib), fn_name)
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
    blas_library, openblas (its own config string), openblas_core (the
    kernel set it runs), aten_cpu (the ATen
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
    return {"blas_kind": kind, "blas_library": library, "openblas": openblas_string(libs, "openblas_get_config"),
            "openblas_core": openblas_string(libs, "openblas_get_corename"),
            "aten_cpu": config_value(torch, "CPU capability usage"), "onednn_isa": onednn_isa(libs)}
