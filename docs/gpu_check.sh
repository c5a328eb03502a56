#!/usr/bin/env bash
# The GPU checks and measurements behind docs/benchmarks.md "On a GPU", in one go:
# the GPU tests, then bench update / learner / system on the GPU.
#   usage: bash docs/gpu_check.sh OUT_DIR      (with the project importable)
# Writes OUT_DIR/log.txt (everything) and OUT_DIR/bench.jsonl (one JSON line per bench).
# SKIP_UPDATE=1 and SKIP_DISTRIBUTED=1 leave out the update benches and the Ray tests.
set -u
out=${1:?usage: bash docs/gpu_check.sh OUT_DIR}
mkdir -p "$out"
log=$out/log.txt
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
py=${PYTHON:-python3}
t0=$(date +%s)

say() { echo "[$(( $(date +%s) - t0 ))s] $*" | tee -a "$log"; }

bench() {  # bench LABEL LIMIT_S WHAT [args...]: one JSON line to bench.jsonl
    local label=$1 limit=$2; shift 2
    say "bench $label: $*"
    timeout "$limit" "$py" -m learner.cli bench "$@" >"$out/.json" 2>>"$log"
    local rc=$?
    if [ $rc -eq 0 ]; then
        "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); d['label']=sys.argv[2];\
print(json.dumps(d))" "$out/.json" "$label" | tee -a "$out/bench.jsonl" | tee -a "$log"
    else
        say "bench $label failed rc=$rc"
    fi
    rm -f "$out/.json"
}

say "host: $(nproc) CPUs; $(nvidia-smi --query-gpu=name,memory.total,driver_version \
--format=csv,noheader 2>&1)"
"$py" - <<'EOF' 2>&1 | tee -a "$log"
import ale_py, gymnasium, ray, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available",
      torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available()
      else "-", "| ray", ray.__version__, "| ale-py", ale_py.__version__,
      "| gymnasium", gymnasium.__version__)
EOF

say "pytest tests/learner/test_gpu.py"
timeout 150 "$py" -m pytest -q -p no:cacheprovider tests/learner/test_gpu.py 2>&1 | tail -n 25 \
    | tee -a "$log"

small="replay.capacity_transitions=100000 replay.learning_starts_env_steps=5000"
if [ -z "${SKIP_UPDATE:-}" ]; then
    bench update-2013-b32 40 update --preset laptop
    bench update-nature-b32 40 update --preset pong
    bench update-nature-b512 40 update --preset pong agent.batch_size=512
    bench update-nature-b512-bf16 40 update --preset pong agent.batch_size=512 \
        agent.precision=bfloat16
fi
# shellcheck disable=SC2086
bench learner-nature-b32 90 learner --preset pong --seconds 5 $small \
    ray.num_collectors=8 ray.learner_cpus=2
# shellcheck disable=SC2086
bench learner-nature-b512 90 learner --preset pong --seconds 5 $small \
    ray.num_collectors=8 ray.learner_cpus=2 agent.batch_size=512
# shellcheck disable=SC2086
bench learner-nature-b512-s4 90 learner --preset pong --seconds 5 $small \
    ray.num_collectors=8 ray.learner_cpus=2 agent.batch_size=512 ray.num_replay_shards=4 \
    ray.samples_in_flight=4
for n in 4 12; do
    # shellcheck disable=SC2086
    bench system-nature-b32-c$n 90 system --preset pong --seconds 5 $small \
        ray.num_collectors=$n ray.learner_cpus=2
done

if [ -z "${SKIP_DISTRIBUTED:-}" ]; then
    say "pytest tests/learner/test_distributed.py (the learner takes the GPU there too)"
    timeout 180 "$py" -m pytest -q -p no:cacheprovider tests/learner/test_distributed.py 2>&1 \
        | tail -n 25 | tee -a "$log"
fi
say "done"
