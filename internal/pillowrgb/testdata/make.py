#!/usr/bin/python3
# Makes the fixtures pillowrgb_test.go compares with: small pseudo-random
# colour pictures saved as JPEG (4:2:0, 4:2:2, 4:4:4; 4:4:0 by cjpeg of
# Debian's libjpeg-turbo-progs) and lossy WebP by
# Debian's python3-pil (9.4.0, libjpeg-turbo 2.1, libwebp 1.2), and the RGB
# Pillow decodes each to, as PNG. Odd and even sizes, 1 and 2 pixels wide.
# Run: /usr/bin/python3 make.py
import os
import random
import subprocess
from PIL import Image

SIZES = [(13, 9), (16, 16), (7, 10), (1, 5), (2, 3), (33, 17)]
rng = random.Random(5)
for (w, h) in SIZES:
    im = Image.new("RGB", (w, h))
    px = []
    for y in range(h):
        for x in range(w):
            px.append(tuple(max(0, min(255, int(127 + 110 * (((x * (2 + c) + y * (4 - c)) % 11) / 10 - 0.5)) + rng.randint(-50, 50))) for c in range(3)))
    im.putdata(px)
    for name, sub in (("420", 2), ("422", 1), ("444", 0)):
        f = f"rgb-{w}x{h}-{name}.jpg"
        im.save(f, quality=90, subsampling=sub)
        Image.open(f).convert("RGB").save(f + ".png")
    # 4:4:0 (colour halved down: what jpegtran -rotate 90 makes of a 4:2:2
    # file), which Pillow does not write: libjpeg-turbo's cjpeg does.
    f = f"rgb-{w}x{h}-440.jpg"
    im.save("in.ppm")
    subprocess.run(["cjpeg", "-quality", "90", "-sample", "1x2", "-outfile", f, "in.ppm"], check=True)
    os.remove("in.ppm")
    Image.open(f).convert("RGB").save(f + ".png")
    f = f"rgb-{w}x{h}.webp"
    im.save(f, quality=80)
    Image.open(f).convert("RGB").save(f + ".png")

# Lossy WebP with alpha: Pillow's RGB of it (the alpha dropped).
im = Image.new("RGBA", (13, 9))
im.putdata([(rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255), rng.choice([0, 60, 255])) for _ in range(13 * 9)])
im.save("rgba-13x9.webp", quality=80)
Image.open("rgba-13x9.webp").convert("RGB").save("rgba-13x9.webp.png")

# offset-frame.gif (written by Go's gif.EncodeAll: Pillow cannot write a
# first frame smaller than its screen): a 20×10 frame at (5, 7) on a 40×30
# screen. Its Pillow decoding:
Image.open("offset-frame.gif").convert("RGB").save("offset-frame.gif.png")
