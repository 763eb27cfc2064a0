#!/usr/bin/python3
# Makes the fixtures resize_test.go compares Kiln's image-folder resize with:
# small pseudo-random grey (L) and RGB pictures, and what Pillow's
# ImageOps.fit (crop) and ImageOps.pad (pad, black) make of them with
# BILINEAR. Run with Debian's python3-pil (9.4.0): /usr/bin/python3 make.py
import random
from PIL import Image, ImageOps

SOURCES = [(7, 5), (28, 28), (40, 30), (30, 45), (100, 80), (13, 57), (64, 64)]
TARGETS = [(28, 28), (32, 32), (16, 24), (50, 40)]  # (width, height)

rng = random.Random(14)
for mode in ("L", "RGB"):
    for (w, h) in SOURCES:
        im = Image.new(mode, (w, h))
        bands = len(mode)
        # Smooth blobs plus noise: edges and gradients both.
        px = []
        for y in range(h):
            for x in range(w):
                v = [int(127 + 120 * (((x * (3 + c) + y * (5 - c)) % 17) / 16 - 0.5)) for c in range(bands)]
                v = [max(0, min(255, a + rng.randint(-40, 40))) for a in v]
                px.append(tuple(v) if bands > 1 else v[0])
        im.putdata(px)
        name = f"{mode.lower()}-{w}x{h}"
        im.save(f"{name}.png")
        for (tw, th) in TARGETS:
            ImageOps.fit(im, (tw, th), Image.BILINEAR).save(f"{name}-crop-{th}x{tw}.png")
            ImageOps.pad(im, (tw, th), Image.BILINEAR, color=0).save(f"{name}-pad-{th}x{tw}.png")

# The same pictures as lossless WebP, BMP and GIF (grey only: GIF is
# paletted), for the test that every format decodes to the PNG's pixels.
for name in ("l-13x57", "rgb-13x57"):
    im = Image.open(f"{name}.png")
    im.save(f"{name}.webp", lossless=True)
    im.save(f"{name}.bmp")
    if im.mode == "L":
        im.save(f"{name}.gif")
