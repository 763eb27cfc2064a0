#!/bin/bash
# Runs on the GPU machine what scripts/gpu-pack.sh packed: every CUDA test
# with REQUIRE_CUDA=1 (all kernels against the CPU, the driver, the fused
# layers, training and time to accuracy on the GPU, the suite's ops on
# CUDA), kernel profiles of LeNet and cnn steps, then the benchmark suite on
# the GPU. Results go to $OUT (the device tool's output folder) as
# one tarball, rewritten after each stage so a run cut short keeps what it did.
#
#   bash scripts/gpu-run.sh                      # tests, then the whole suite, one round
#   bash scripts/gpu-run.sh tests                # tests only (about a minute)
#   bash scripts/gpu-run.sh profiles             # tests, four kernel profiles, graph, precision and tiles A/B (issues 13, 17)
#   DEADLINE_S=480 bash scripts/gpu-run.sh       # all of it, the suite cut to end within 480 s of the start
#   SUITE_ARGS="--sections train --rounds 3" bash scripts/gpu-run.sh
#   SUITE_ARGS="--sections train --precision fp32,bf16" bash scripts/gpu-run.sh  # issue 13's GPU figures
#
# The suite stops (SIGINT, keeping what it measured) after SUITE_SECONDS
# (default 420), or earlier where DEADLINE_S (seconds from the start, for
# the whole script) comes first; PyTorch is the machine's python3.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
G=$PWD/.gpu
R=$(mktemp -d)/gpu-results
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$R" "$OUT"
save() { tar czf "$OUT/gpu-results.tgz" -C "$(dirname "$R")" gpu-results; }
for f in "$G"/*.xz; do
	[[ -e $f ]] || continue
	xz -d -f "$f" 2>/dev/null ||
		python3 -c "import lzma,sys; open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" "$f"
done
chmod +x "$G"/kiln-cuda "$G"/*.test
{
	date -u
	cat "$G/commit" "$G/fatbin.sha256" 2>/dev/null
	nvidia-smi
	python3 -c 'import torch,sys; print(sys.executable, torch.__version__, torch.version.cuda)'
} >"$R/env.txt" 2>&1
"$G/kiln-cuda" info >"$R/kiln-info.txt" 2>&1
export REQUIRE_CUDA=1 KILN_KERNEL_COVERAGE=1
# NCCL for cuda.TestNCCLOneRank (issue 18): the machine has no Open MPI, but
# its PyTorch ships NCCL (the nvidia-nccl wheel, or inside torch/lib).
if [[ -z ${KILN_NCCL_LIBRARY:-} ]]; then
	nccl=$(python3 -c 'import glob, os, torch
d = os.path.dirname(os.path.dirname(torch.__file__))
c = glob.glob(d + "/nvidia/nccl/lib/libnccl.so*") + glob.glob(os.path.dirname(torch.__file__) + "/lib/libnccl*.so*")
print(c[0] if c else "")' 2>/dev/null)
	[[ -n $nccl ]] && export KILN_NCCL_LIBRARY=$nccl REQUIRE_NCCL=1
fi
echo "NCCL: ${KILN_NCCL_LIBRARY:-none found}" >>"$R/env.txt"
[[ -d $G/data ]] && export KILN_DATA_DIR=$G/data
for p in cuda engine layers trainer bench; do
	run=CUDA
	[[ $p == cuda ]] && run=.
	(cd "$p" && timeout 300 "$G/$p.test" -test.v -test.count=1 -test.run "$run") >"$R/$p-tests.log" 2>&1
	echo "$p tests: rc=$?"
	grep -hE '^(--- FAIL|FAIL|panic|SIGSEGV)' "$R/$p-tests.log" | head -20
done
grep -E ' (ok|FAIL)$' "$R/engine-tests.log" | grep -c ' ok$' | sed 's/^/kernels ok: /'
grep -E ' FAIL$' "$R/engine-tests.log"
save
[[ ${1:-} == tests ]] && exit 0
# Kernel profiles of a step (issue 17): a small and a large batch of LeNet,
# cnn at 32x32x3, fp32; each a few seconds.
for spec in "lenet 64 28x28x1" "lenet 1024 28x28x1" "cnn 128 32x32x3" "cnn 1024 32x32x3"; do
	read -r model batch input <<<"$spec"
	timeout 60 "$G/kiln-cuda" bench --device cuda --model "$model" --batch "$batch" --input "$input" --profile \
		--seconds 1 >"$R/profile-$model-$batch.txt" 2>&1
	echo "profile $model b$batch: rc=$? $(grep -m1 'ms/step' "$R/profile-$model-$batch.txt")"
done
# The step as one CUDA graph against its launches one by one (issue 17,
# item 6), alternating, a few seconds each.
for spec in "lenet 64 28x28x1" "lenet 1024 28x28x1" "cnn 128 32x32x3"; do
	read -r model batch input <<<"$spec"
	for graph in "" --no-cuda-graph; do
		# shellcheck disable=SC2086
		timeout 60 "$G/kiln-cuda" bench --device cuda --model "$model" --batch "$batch" --input "$input" \
			--seconds 2 $graph >>"$R/graph-ab.txt" 2>&1
		echo "$model b$batch ${graph:-graph}: $(tail -1 "$R/graph-ab.txt")"
	done
done
# bf16 against fp32 products at batch 1024 (issue 13: at least 2x on the
# conv models), alternating, a few seconds each.
for spec in "cnn 1024 32x32x3" "inception 1024 32x32x3" "lenet 1024 28x28x1"; do
	read -r model batch input <<<"$spec"
	for prec in fp32 bf16; do
		timeout 60 "$G/kiln-cuda" bench --device cuda --model "$model" --batch "$batch" --input "$input" \
			--seconds 2 --precision "$prec" >>"$R/precision-ab.txt" 2>&1
		echo "$model b$batch $prec: $(tail -1 "$R/precision-ab.txt")"
	done
done
# The tile planner's smaller and rectangular fp32 tiles against the 64 and
# 128 tiles alone (issue 17, item 3), alternating, a few seconds each.
for spec in "lenet 1024 28x28x1" "cnn 128 32x32x3"; do
	read -r model batch input <<<"$spec"
	for square in 0 1; do
		KILN_CUDA_SQUARE_TILES=$square timeout 60 "$G/kiln-cuda" bench --device cuda --model "$model" \
			--batch "$batch" --input "$input" --seconds 2 >>"$R/tiles-ab.txt" 2>&1
		echo "$model b$batch square-only=$square: $(tail -1 "$R/tiles-ab.txt")"
	done
done
save
[[ ${1:-} == profiles ]] && exit 0
suite_s=${SUITE_SECONDS:-420}
if [[ -n ${DEADLINE_S:-} ]] && ((DEADLINE_S - SECONDS - 15 < suite_s)); then
	suite_s=$((DEADLINE_S - SECONDS - 15))
fi
echo "suite: $suite_s s"
# shellcheck disable=SC2086
timeout -s INT "$suite_s" "$G/kiln-cuda" bench suite --device cuda --python python3 \
	--out "$R/bench" ${SUITE_ARGS:---rounds 1} >"$R/bench.log" 2>&1
echo "suite: rc=$?"
grep -v 'INF' "$R/bench.log" | tail -60
save
