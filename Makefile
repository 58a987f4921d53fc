# The README's two commands: `make serve` and `make test`. Both install into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ponder-installed
HOST ?= 127.0.0.1
PORT ?= 8000
# Small KV blocks: the bundled models see short prompts, and prefix-cache hits come in whole blocks.
SERVE_ARGS ?= --block-size 32

.PHONY: install serve test lint models router router-test bench-overhead clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cpu,train,test]'
	# PyPI's vision packages do not import beside the CPU torch and break transformers' model classes.
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(VENV)/bin/ponder serve --host $(HOST) --port $(PORT) $(SERVE_ARGS)

test: install
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -ra

lint: install
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m ruff format --check .

# Retrain the bundled models from scratch, reproducibly (not part of `make test`), in order: policy, PRM, ORM.
# OMP_WAIT_POLICY=PASSIVE keeps torch's threads from spinning when other work shares the cores.
#
# The policy is made in four SFT stages. The base learns the traces on reasoning-gym's wording: 96,000 problems, 3000
# steps, ~21 min on 2 CPU cores. The second continues it on how people ask (docs/results/policy.md): half the problems
# rephrased ("What is 12+7?", "3*41?", bare expressions), system prompts, extra two-term problems mixing one- and
# two-digit numbers, and off-topic prompts answered with a short refusal; 2850 steps, 26 min on 1 thread. The third
# anneals on problems the others never saw at a lower learning rate, with wordings and system prompts composed from
# parts (--wide-questions, --wide-system-prompts) rather than drawn from short fixed lists, and system prompts in 30%
# of the chats; 2138 steps, ~16 min on 2 threads. The fourth repeats the third on 36,000 further unseen problems,
# from its weights (2138 steps, ~15 min): it lifted two-term sums from 95.5% to 98.5% and the template from 63.0% to
# 64.5% (docs/results/policy.md).
# Then it is measured on the template (transformers, then vLLM as a cross-check that vLLM loads it) and on held-out
# phrasings.
POLICY_FLAGS := --train-size 96000 --levels 1 2 3 4 5 --hidden-size 128 --num-layers 4 --intermediate-size 512 \
	--batch-size 32 --learning-rate 1e-3 --no-group-by-length --seed 0 --threads 2
PEOPLE_MIX := --levels 1 2 3 4 5 --natural-fraction 0.5 --system-fraction 0.1 --two-term-fraction 0.8 \
	--off-topic-fraction 0.1 --batch-size 32 --no-group-by-length --threads 2
POLICY_MIX_FLAGS := --train-size 48000 $(PEOPLE_MIX) --learning-rate 5e-4 --seed 1
ANNEAL_MIX := --train-size 36000 $(PEOPLE_MIX) --system-fraction 0.3 --wide-questions --wide-system-prompts \
	--learning-rate 2e-4
POLICY_ANNEAL_FLAGS := $(ANNEAL_MIX) --data-offset 48000 --seed 2
POLICY_ANNEAL2_FLAGS := $(ANNEAL_MIX) --data-offset 84000 --seed 3
# The PRM is generative (docs/results/verifiers.md): a causal LM trained on gold traces with every number least
# significant digit first, 9000 steps, 47 min on 2 threads; then continued on the policy's phrasings, composed
# wordings and system prompts, and questions followed by an instruction ("Show your work."; it reads the question as
# asked: docs/results/wordings.md), 1300 steps, ~12 min on 2 threads; then measured on 200 validation problems x 16 policy
# samples, drawn through the vLLM engine and cached in build/samples/ (~1 min). The ORM learns from the policy's own
# samples (800 train problems x 8, ~1 min to draw) plus 4 corrupted gold traces per problem, outcome labels only: a
# frozen copy of the PRM's language model reads each answer, and a 5-number head over its reading of every token,
# pooled by a soft minimum, is fit by Bradley-Terry on (right, wrong) pairs (--head token-min; ~1 min on 1 thread).
# It is measured on the same 200 x 16 validation samples. (The sequence-classification ORMs tried before it, from the
# policy or from the PRM's LM, stayed at or under 59% pairwise: docs/results/verifiers.md.)
ORM_FLAGS := --head token-min --base-model ponder/models/prm --number-order reversed --loss bt \
	--max-pairs-per-prompt 16 --hard-negatives 4 --learning-rate 1e-2 --batch-size 64 --epochs 4 --seed 0 --threads 1
PRM_FLAGS := --train-size 96000 --epochs 3 --eval-size 200 --hidden-size 128 --num-layers 4 --intermediate-size 512 \
	--batch-size 32 --learning-rate 1e-3 --no-group-by-length --seed 0 --threads 2
PRM_MIX_FLAGS := --train-size 32000 --eval-size 200 --levels 1 2 3 4 5 --natural-fraction 0.5 --system-fraction 0.3 \
	--wide-questions --wide-system-prompts --instruction-fraction 0.3 --two-term-fraction 0.3 --batch-size 32 \
	--learning-rate 5e-4 --no-group-by-length --seed 1 --threads 2
models: install
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/ponder train sft --output-dir build/models/policy-base --overwrite $(POLICY_FLAGS)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/ponder train sft --init-model build/models/policy-base \
		--output-dir build/models/policy-mix --overwrite $(POLICY_MIX_FLAGS)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/ponder train sft --init-model build/models/policy-mix \
		--output-dir build/models/policy-anneal --overwrite $(POLICY_ANNEAL_FLAGS)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/ponder train sft --init-model build/models/policy-anneal \
		--output-dir ponder/models/policy --overwrite $(POLICY_ANNEAL2_FLAGS)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m ponder.training.measure ponder/models/policy --count 200 --samples 16 --temperature 0.8 \
		--out ponder/models/policy/eval.json
	$(PY) -m ponder.training.measure ponder/models/policy --count 200 --samples 16 --temperature 0.8 --engine vllm \
		--out ponder/models/policy/eval_vllm.json
	OMP_WAIT_POLICY=PASSIVE $(PY) -m ponder.training.phrasing_eval ponder/models/policy --count 200 \
		--out ponder/models/policy/eval_phrasings.json
	$(PY) -m ponder.training.model_card ponder/models/policy
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/ponder train genprm --output-dir build/models/prm-base --overwrite $(PRM_FLAGS)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/ponder train genprm --init-model build/models/prm-base \
		--output-dir ponder/models/prm --overwrite $(PRM_MIX_FLAGS)
	$(PY) -m ponder.training.genprm_card ponder/models/prm --count 200 --k 16 --temperature 0.8 \
		--cache build/samples/validation-200x16.jsonl
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/ponder train rm --output-dir ponder/models/orm --overwrite $(ORM_FLAGS)

# The learned router of reasoning_effort auto (docs/results/routing.md), trained on the bundled models' eval logs on
# validation problems (600: 120 a level; on 200 it fit 4 points above its cross-validated accuracy); run after
# `make models` (about 40 min on 2 cores: 25 for the plain arms, 12 for the adaptive ones), then
# `make router-test` measures it on the 200 test problems.
ROUTER_EVAL := --engine vllm --dtype float32 --max-model-len 512 --gpu-memory-utilization 0.1 --block-size 32 \
	--no-progress
router: install
	rm -rf out/routing-validation  # the trainer reads every run in the folder: no stale arms
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/ponder eval $(ROUTER_EVAL) --count 120 --split validation \
		--runs-file docs/results/routing.yaml --only probe,bon,dvts,beam,abon,advts,advts1 --out out/routing-validation
	$(VENV)/bin/ponder train router --logs out/routing-validation --objective within_tokens --token-ratio 0.25 \
		--token-confidence 1.645 --holdout-problems 200 --output ponder/server/router.json --overwrite
	$(VENV)/bin/ponder train router --logs out/routing-validation \
		--output docs/results/routing/router-match-accuracy.json --overwrite

router-test: install
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/ponder eval $(ROUTER_EVAL) --count 40 --runs-file docs/results/routing.yaml \
		--only auto --out out/routing-test

bench-overhead: install
	$(VENV)/bin/ponder bench overhead --out docs/results/overhead.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache dist *.egg-info
