#!/usr/bin/env bash
# The GPU check of issue 16 in one command: under 8 minutes on a machine with one NVIDIA GPU
# and 16 cores. Installs the gpu extra into .venv-gpu, builds the fp16 bundle, runs the
# CUDA-marked tests, measures (a) worker scaling on the tiny bundle, (b) default-bundle
# saturation with CPU and GPU decoding, (c) GPU memory over varied batch sizes, (d) a batch-size
# sweep; writes bench/results/gpu.json and renders docs/gpu.md from it. See docs/gpu.md.
#
#   bash bench/gpu_check.sh [--device cuda|cpu] [--quick] [--out FILE] [--skip-install]
#                           [--rebuild-fp16] [--steps LIST]
#
#   --device cpu --quick   how a CPU machine tests this script (the main .venv, no install,
#                          no fp16 build; results in bench/results/quick/gpu.json and .md)
#   --steps LIST           a comma-separated subset of: install,fp16_build,cuda_tests,scaling,
#                          saturation,memory,batch_sweep
#
# Environment:
#   GPU_CHECK_WHEELS=DIR          install offline: pip --no-index --find-links DIR (DIR holds
#                                 every wheel, setuptools included: pip download -d DIR
#                                 ".[gpu,dev,bench]" setuptools)
#   GPU_CHECK_FASHION_MNIST=DIR   the Fashion-MNIST idx files for the fp16 build (default:
#                                 /usr/share/datasets/fashion-mnist, Debian's dataset package)
#   GPU_CHECK_PYTHON=python3.11   the interpreter .venv-gpu is made from (default python3)
#   GPU_CHECK_BUDGET_S=470        the whole run's time budget in seconds
#
# Each step runs under its own time limit (cut to what is left of the budget) and a failing or
# killed step is recorded in the results file; the next step still runs. The log is beside the
# results file (gpu.log). Exit status: 0 when every step that ran succeeded, else 1; 2 when
# models/default is missing.
set -uo pipefail # no -e: a failing step is recorded and the others still run

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

DEVICE=cuda
QUICK=0
OUT=""
SKIP_INSTALL=0
REBUILD_FP16=0
STEPS="install,fp16_build,cuda_tests,scaling,saturation,memory,batch_sweep"
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}
BASE_PYTHON=${GPU_CHECK_PYTHON:-python3}
COMMAND_LINE="bench/gpu_check.sh $*"

# Each step's time limit (seconds) on the GPU machine; see docs/gpu.md for the estimates.
declare -A LIMIT=(
    [install]=100 [fp16_build]=90 [cuda_tests]=40
    [scaling]=60 [saturation]=110 [memory]=45 [batch_sweep]=30
)
DOC_RESERVE_S=10 # kept back for rendering the page
KILL_AFTER_S=20  # after SIGTERM at a limit, a step has this long to stop its servers

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
    --device) DEVICE=${2:?--device needs cuda or cpu}; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT=${2:?--out needs a file}; shift 2 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --rebuild-fp16) REBUILD_FP16=1; shift ;;
    --steps) STEPS=${2:?--steps needs a list}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
case $DEVICE in cuda | cpu) ;; *) echo "--device: cuda or cpu, not $DEVICE" >&2; exit 2 ;; esac

if [[ ! -f models/default/manifest.json ]]; then
    cat >&2 <<'EOF'
models/default is missing: the default bundle must be built first, on a machine with the
export tools (torch) and network access:

    make bundle

then copy models/default here (its ONNX files, tokenizer.json and manifest.json are not
committed). This script does not build it: that needs torch, which the GPU environment lacks.
EOF
    exit 2
fi

if [[ -z $OUT ]]; then
    if ((QUICK)); then OUT=bench/results/quick/gpu.json; else OUT=bench/results/gpu.json; fi
fi
mkdir -p "$(dirname "$OUT")"
LOG="${OUT%.json}.log"
: >"$LOG"
if [[ $DEVICE == cuda ]]; then VENV=.venv-gpu; else VENV=.venv; fi
PY="$VENV/bin/python"
QUICK_FLAG=()
if ((QUICK)); then QUICK_FLAG=(--quick); fi
START_S=$SECONDS
FAILED=0

log() { printf '[gpu_check %s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$LOG"; }

# Recording needs only the standard library: it works before any venv exists.
results() { "$BASE_PYTHON" -m bench.gpu.results "$@" >>"$LOG" 2>&1 || log "could not record: $*"; }

wanted() { [[ ",$STEPS," == *",$1,"* ]]; }

# The step's limit, cut to what is left of the budget (less the page's reserve).
limit_for() {
    local left=$((BUDGET_S - (SECONDS - START_S) - DOC_RESERVE_S))
    local limit=${LIMIT[$1]}
    ((left < limit)) && limit=$left
    echo $((limit > 0 ? limit : 0))
}

skip() { # skip STEP REASON
    log "$1: skipped: $2"
    results record --out "$OUT" --step "$1" --status skipped --note "$2"
}

# run_shell_step STEP COMMAND...: a step the shell runs itself, under its limit, recorded.
run_shell_step() {
    local step=$1 limit started rc status note
    shift
    limit=$(limit_for "$step")
    if ((limit < 5)); then skip "$step" "no time left in the ${BUDGET_S} s budget"; return; fi
    log "$step: started (limit ${limit} s)"
    started=$SECONDS
    timeout --kill-after="$KILL_AFTER_S" "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    status=ok note=""
    if ((rc == 124 || rc == 137)); then
        status=timed_out note="stopped at its ${limit} s limit"
    elif ((rc != 0)); then
        status=failed note="exit status $rc; see $LOG"
    fi
    [[ $status == ok ]] || FAILED=1
    log "$step: $status in $((SECONDS - started)) s"
    results record --out "$OUT" --step "$step" --status "$status" --rc "$rc" \
        --seconds "$((SECONDS - started))" --limit-s "$limit" --note "$note"
}

# run_measure_step STEP: one of the runner's steps (bench.gpu.gpu_check), under its limit.
run_measure_step() {
    local step=$1 limit rc status
    limit=$(limit_for "$step")
    if ((limit < 5)); then skip "$step" "no time left in the ${BUDGET_S} s budget"; return; fi
    timeout --kill-after="$KILL_AFTER_S" "$limit" "$PY" -m bench.gpu.gpu_check run \
        --out "$OUT" --steps "$step" --device "$DEVICE" ${QUICK_FLAG[@]+"${QUICK_FLAG[@]}"} \
        --limit-s "$limit" > >(tee -a "$LOG") 2>&1
    rc=$?
    if ((rc != 0)); then
        FAILED=1
        status=$("$BASE_PYTHON" -m bench.gpu.results close --out "$OUT" --step "$step" \
            --rc "$rc" --note "runner exit status $rc; see $LOG" 2>>"$LOG")
        log "$step: ${status:-failed} (exit status $rc)"
    fi
}

install_gpu() {
    local pip_opts=()
    if [[ -n ${GPU_CHECK_WHEELS:-} ]]; then pip_opts=(--no-index --find-links "$GPU_CHECK_WHEELS"); fi
    if [[ ! -x $VENV/bin/python ]]; then "$BASE_PYTHON" -m venv "$VENV" || return 1; fi
    "$VENV/bin/python" -m pip install --quiet ${pip_opts[@]+"${pip_opts[@]}"} -e ".[gpu,dev,bench]" || return 1
    # onnxruntime (a core dependency) and onnxruntime-gpu share the onnxruntime package: drop
    # the CPU build, then lay the GPU build's files down again whole.
    "$VENV/bin/python" -m pip uninstall --quiet -y onnxruntime || return 1
    "$VENV/bin/python" -m pip install --quiet ${pip_opts[@]+"${pip_opts[@]}"} --force-reinstall --no-deps \
        "onnxruntime-gpu>=1.31" || return 1
    cuda_ready
}

# True when the venv's ONNX Runtime has the CUDA provider and nvImageCodec imports.
cuda_ready() {
    "$VENV/bin/python" - <<'EOF'
import onnxruntime as ort
providers = ort.get_available_providers()
print("onnxruntime", ort.__version__, providers)
import nvidia.nvimgcodec  # noqa: F401  (the gpu extra's decoder)
raise SystemExit(0 if "CUDAExecutionProvider" in providers else 1)
EOF
}

# The fp16 bundle is rebuilt unless one evaluated on CUDA is already in place.
fp16_built_on_cuda() {
    [[ -f models/default-fp16/manifest.json ]] &&
        grep -q CUDAExecutionProvider models/default-fp16/evaluation.json 2>/dev/null
}

build_fp16() {
    local data=()
    if [[ -n ${GPU_CHECK_FASHION_MNIST:-} ]]; then data=(--data-dir "$GPU_CHECK_FASHION_MNIST"); fi
    "$PY" -m models.recipes.fashion_mnist.build_fp16_bundle --device cuda ${data[@]+"${data[@]}"}
}

results begin --out "$OUT" --device "$DEVICE" ${QUICK_FLAG[@]+"${QUICK_FLAG[@]}"} --command "$COMMAND_LINE"
log "results: $OUT; log: $LOG; budget ${BUDGET_S} s; device $DEVICE; quick $QUICK"

if wanted install; then
    if [[ $DEVICE != cuda ]]; then
        skip install "device cpu: the main environment ($VENV) is used"
    elif ((SKIP_INSTALL)); then
        skip install "--skip-install: $VENV used as it is"
    elif [[ -x $VENV/bin/python ]] && cuda_ready >>"$LOG" 2>&1; then
        skip install "already installed in $VENV (CUDA provider and nvImageCodec present)"
    else
        export VENV BASE_PYTHON
        run_shell_step install bash -c "$(declare -f install_gpu cuda_ready); install_gpu"
    fi
fi
if [[ ! -x $PY ]]; then
    log "no $PY: nothing more can run"
    exit 1
fi
"$PY" -m bench.gpu.gpu_check describe --out "$OUT" >>"$LOG" 2>&1 || log "could not describe the machine"

if wanted fp16_build; then
    if [[ $DEVICE != cuda ]]; then
        skip fp16_build "device cpu: the fp16 bundle's float16 arithmetic needs CUDA"
    elif ((!REBUILD_FP16)) && fp16_built_on_cuda; then
        skip fp16_build "models/default-fp16 is built and was evaluated on CUDA (--rebuild-fp16 to redo)"
    else
        export PY GPU_CHECK_FASHION_MNIST
        run_shell_step fp16_build bash -c "$(declare -f build_fp16); build_fp16"
    fi
fi

if wanted cuda_tests; then
    pytest_out="${OUT%.json}.pytest.txt"
    run_shell_step cuda_tests bash -c "set -o pipefail; '$PY' -m pytest -m cuda tests/app \
        tests/models -q -p no:cacheprovider 2>&1 | tee '$pytest_out'"
    summary=$(grep -E '(passed|failed|skipped|deselected|error)' "$pytest_out" | tail -n 1)
    results record --out "$OUT" --step cuda_tests --summary "${summary:-no pytest summary}"
fi

for step in scaling saturation memory batch_sweep; do
    if wanted "$step"; then run_measure_step "$step"; fi
done

# The page: docs/gpu.md from bench/results/gpu.json; a run written elsewhere renders beside it.
if [[ $OUT == bench/results/gpu.json ]]; then
    PAGE=docs/gpu.md
else
    PAGE="${OUT%.json}.md"
    cp docs/gpu.md "$PAGE"
fi
"$PY" -m bench.gpu.gpu_doc --results "$OUT" --doc "$PAGE" >>"$LOG" 2>&1 || {
    log "could not render $PAGE"
    FAILED=1
}
log "done in $((SECONDS - START_S)) s: $OUT, $PAGE, $LOG"
exit "$FAILED"
