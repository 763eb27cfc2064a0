#!/bin/sh
# Makes the files Pillow reads and Go's decoders do not (folderdecode's
# notSupported): an arithmetic-coded JPEG (cjpeg of Debian's
# libjpeg-turbo-progs) and a two-frame animated WebP (python3-pil 9.4).
# Run: sh make.sh
set -e
/usr/bin/python3 - <<'PY'
from PIL import Image
frames = [Image.new("RGB", (8, 8), c) for c in ((200, 30, 30), (30, 30, 200))]
frames[0].save("anim.webp", save_all=True, append_images=frames[1:], duration=100, lossless=True)
frames[0].save("in.ppm")
PY
cjpeg -arithmetic -outfile arith.jpg in.ppm
rm in.ppm
