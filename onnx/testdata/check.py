"""Checks ONNX files with ONNX's own checker, shape inference included.

    python3 check.py FILE...

Prints one line per file, "ok FILE" or "fail FILE: reason", and exits 1 when
any failed. ONNX 1.12 (Debian's python3-onnx) accepts IR version 8 at most.
"""
import sys

import onnx

failed = False
for path in sys.argv[1:]:
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        print("ok", path)
    except Exception as e:  # the checker's own errors and protobuf's
        failed = True
        print("fail %s: %s" % (path, str(e).replace("\n", " ")))
sys.exit(1 if failed else 0)
