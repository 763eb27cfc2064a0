#!/usr/bin/env bash
# check-fatbin.sh KILN FATBIN: every kernel symbol the engine launches (KILN
# info --kernels) must be in the fat binary `make kernels` wrote, in the
# machine code for each GPU architecture and in the PTX. This is the load-time
# check of cuda.Init (cuModuleGetFunction for every declared kernel) made at
# build time, on machines without a GPU. Needs cuobjdump (CUDA toolkit).
set -euo pipefail
bin=${1:?usage: check-fatbin.sh KILN FATBIN}
fatbin=${2:?usage: check-fatbin.sh KILN FATBIN}
command -v cuobjdump >/dev/null || { echo "check-fatbin: cuobjdump not found (CUDA toolkit)"; exit 1; }
declared=$("$bin" info --kernels)
[ -n "$declared" ] || { echo "check-fatbin: $bin declares no kernels"; exit 1; }
# Global functions per architecture, as "arch name" lines.
syms=$(cuobjdump -symbols "$fatbin" | awk '
  /^Fatbin ptx code:/ { arch = "" }
  /^Fatbin elf code:/ { elf = 1 }
  /^arch = / && elf { arch = $3; elf = 0 }
  arch != "" && $1 == "STT_FUNC" && $2 == "STB_GLOBAL" { print arch, $4 }')
ptx=$(cuobjdump -ptx "$fatbin" | sed -n 's/^\.visible \.entry \([A-Za-z0-9_]*\)(.*/\1/p' | sort -u)
archs=$(echo "$syms" | awk '{print $1}' | sort -u)
[ -n "$archs" ] || { echo "check-fatbin: no machine code in $fatbin"; exit 1; }
missing=0
for k in $declared; do
  for a in $archs; do
    if ! grep -qx "$a $k" <<<"$syms"; then echo "check-fatbin: $k is missing from the $a code in $fatbin"; missing=1; fi
  done
  if ! grep -qx "$k" <<<"$ptx"; then echo "check-fatbin: $k is missing from the PTX in $fatbin"; missing=1; fi
done
if [ $missing -ne 0 ]; then
  echo "check-fatbin: kernels the engine launches are not in the module; is their kernels/*.cu file there and does it define them extern \"C\" (KILN_KERNEL)?"
  exit 1
fi
n=$(wc -w <<<"$declared")
extra=$(comm -13 <(tr ' ' '\n' <<<"$declared" | sort -u) <(echo "$ptx"))
echo "check-fatbin: all $n declared kernels are in $fatbin ($(echo $archs | tr '\n' ' ')+ PTX; $(stat -c %s "$fatbin") bytes)"
if [ -n "$extra" ]; then echo "check-fatbin: in the module but not launched by the engine: $(echo $extra)"; fi
