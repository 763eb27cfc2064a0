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
#   bash scripts/gpu-run.sh profiles             # tests, kernel profiles, graph, precision and tiles A/B (issues 13, 17)
#   DEADLINE_S=480 bash scripts/gpu-run.sh       # all of it, the suite cut to end within 480 s of the start
#   DEADLINE_S=300 SUITE_ARGS="--sections ops --rounds 1" bash scripts/gpu-run.sh recheck
#                                                # tests, profiles, split A/B, the suite, then the host CPU
#                                                # against PyTorch (issues 16, 13) with what time is left
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
chmod +x "$G"/kiln-cuda "$G"/*.test 2>/dev/null
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
left() { echo $((${DEADLINE_S:-100000} - SECONDS)); }

tests() {
	for p in cuda engine layers trainer bench; do
		[[ -x $G/$p.test ]] || { echo "$p tests: not packed (gpu-pack.sh --no-tests)"; continue; }
		run=CUDA
		[[ $p == cuda ]] && run=.
		(cd "$p" && timeout 300 "$G/$p.test" -test.v -test.count=1 -test.run "$run") >"$R/$p-tests.log" 2>&1
		echo "$p tests: rc=$?"
		grep -hE '^(--- FAIL|FAIL|panic|SIGSEGV)' "$R/$p-tests.log" | head -20
	done
	[[ -f $R/engine-tests.log ]] || return 0
	grep -E ' (ok|FAIL)$' "$R/engine-tests.log" | grep -c ' ok$' | sed 's/^/kernels ok: /'
	grep -E ' FAIL$' "$R/engine-tests.log"
}

# Kernel profiles of a step (issue 17): a small and a large batch of LeNet,
# cnn at 32x32x3, fp32, and (issue 13) the large ones in bf16; each a few
# seconds.
profiles() {
	for spec in "lenet 64 28x28x1 fp32" "lenet 1024 28x28x1 fp32" "cnn 128 32x32x3 fp32" "cnn 1024 32x32x3 fp32" \
		"lenet 1024 28x28x1 bf16" "cnn 1024 32x32x3 bf16"; do
		read -r model batch input prec <<<"$spec"
		f=$R/profile-$model-$batch$([[ $prec == bf16 ]] && echo -bf16).txt
		timeout 60 "$G/kiln-cuda" bench --device cuda --model "$model" --batch "$batch" --input "$input" --profile \
			--precision "$prec" --seconds 1 >"$f" 2>&1
		echo "profile $model b$batch $prec: rc=$? $(grep -m1 'ms/step' "$f")"
	done
}

# A/B runs, alternating, a few seconds each. ab_one FILE LABEL ENV... runs
# one kiln bench (the spec in $model $batch $input, extra flags in $flags)
# and prints its last line.
ab_one() {
	local file=$1 label=$2
	shift 2
	# shellcheck disable=SC2086
	env "$@" timeout 60 "$G/kiln-cuda" bench --device cuda --model "$model" --batch "$batch" --input "$input" \
		--seconds 2 $flags >>"$R/$file" 2>&1
	echo "$model b$batch $label: $(tail -1 "$R/$file")"
}

# The step as one CUDA graph against its launches one by one (issue 17,
# item 6).
graph_ab() {
	for spec in "lenet 64 28x28x1" "lenet 1024 28x28x1" "cnn 128 32x32x3"; do
		read -r model batch input <<<"$spec"
		flags="" ab_one graph-ab.txt graph
		flags=--no-cuda-graph ab_one graph-ab.txt --no-cuda-graph
	done
}

# bf16 against fp32 products at batch 1024 (issue 13: at least 2x on the
# conv models).
precision_ab() {
	for spec in "cnn 1024 32x32x3" "inception 1024 32x32x3" "lenet 1024 28x28x1"; do
		read -r model batch input <<<"$spec"
		flags="--precision fp32" ab_one precision-ab.txt fp32
		flags="--precision bf16" ab_one precision-ab.txt bf16
	done
}

# The tile planner's smaller and rectangular fp32 tiles against the 64 and
# 128 tiles alone (issue 17, item 3).
tiles_ab() {
	for spec in "lenet 1024 28x28x1" "cnn 128 32x32x3"; do
		read -r model batch input <<<"$spec"
		flags="" ab_one tiles-ab.txt square-only=0 KILN_CUDA_SQUARE_TILES=0
		flags="" ab_one tiles-ab.txt square-only=1 KILN_CUDA_SQUARE_TILES=1
	done
}

# Split-K weight gradients aimed at 264 blocks (two waves of one block an
# SM) against 1056 (room for the four blocks an SM of the 32x32 tile).
split_ab() {
	for spec in "lenet 1024 28x28x1" "cnn 1024 32x32x3" "lenet 64 28x28x1"; do
		read -r model batch input <<<"$spec"
		for blocks in 264 1056; do
			flags="" ab_one split-ab.txt "split blocks $blocks" KILN_CUDA_SPLIT_BLOCKS=$blocks
		done
	done
}

# The machine's own CPU (issues 16 and 13: an AVX-512 Xeon with AMX, which
# the development machines are not), pinned to two cores as they have: the
# engine's bf16 and ISA-level tests, then Kiln against PyTorch (the
# machine's, at its best thread setting) in bf16 (autocast) and in fp32,
# with Kiln fp32 in the bf16 rounds. Stops where DEADLINE_S comes.
host_cpu() {
	local cores=0,1 py=python3
	grep -m1 'model name' /proc/cpuinfo >"$R/host-cpu.txt"
	grep -m1 -o -w -E 'amx_bf16|avx512_bf16|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ' >>"$R/host-cpu.txt"
	command -v taskset >/dev/null || { echo "host CPU: no taskset to pin two cores"; return; }
	if [[ -x $G/engine.test ]]; then
		(cd engine && taskset -c "$cores" timeout 120 "$G/engine.test" -test.v -test.count=1 -test.skip CUDA \
			-test.run 'BF16|AMX|ISA|Sgemm') >"$R/host-cpu-tests.log" 2>&1
		local rc=$?
		echo "host CPU tests, $(tr '\n' ' ' <"$R/host-cpu.txt"): rc=$rc"
		grep -hE '^(--- FAIL|FAIL|panic)' "$R/host-cpu-tests.log" | head -10
	fi
	mkdir -p "$R/cpu"
	for run in "bf16 gmlp:128:32x32x3,cnn:128:32x32x3" "fp32 cnn:128:32x32x3,inception:128:32x32x3,gmlp:128:32x32x3"; do
		read -r prec cases <<<"$run"
		(($(left) < 100)) && { echo "host CPU $prec: skipped, $(left) s left"; continue; }
		taskset -c "$cores" timeout $(($(left) - 30)) $py bench/torch/compare.py --kiln "$G/kiln-cuda" --rounds 1 \
			--seconds 2 --precision "$prec" --cases "$cases" --out "$R/cpu" >"$R/cpu/compare-$prec.log" 2>&1
		echo "host CPU compare $prec: rc=$?"
		grep -E '==|ratio|fp32 =' "$R/cpu/compare-$prec.log"
	done
}

suite() {
	local suite_s=${SUITE_SECONDS:-420}
	((${DEADLINE_S:-0} > 0 && $(left) - 15 < suite_s)) && suite_s=$(($(left) - 15))
	echo "suite: $suite_s s"
	# shellcheck disable=SC2086
	timeout -s INT "$suite_s" "$G/kiln-cuda" bench suite --device cuda --python python3 \
		--out "$R/bench" ${SUITE_ARGS:---rounds 1} >"$R/bench.log" 2>&1
	echo "suite: rc=$?"
	grep -v 'INF' "$R/bench.log" | tail -60
}

case ${1:-all} in
tests) stages="tests" ;;
profiles) stages="tests profiles graph_ab precision_ab tiles_ab split_ab" ;;
recheck) stages="tests profiles split_ab suite host_cpu" ;;
*) stages="tests profiles graph_ab precision_ab tiles_ab split_ab suite" ;;
esac
for stage in $stages; do
	$stage
	save
done
