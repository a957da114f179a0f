# octopus_ros: the two commands are `make setup` then `make demo` (main job) or `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
ENV := source scripts/env.sh &&

.PHONY: help setup msgs demo test lint format colcon-check train evaluate benchmark bench-node reliability ablation add-function-demo clean

help:
	@echo "make setup        create .venv: ROS 2 Kilted wheels, torch, models libs; build octopus_msgs; install octopus_ros"
	@echo "make demo         main job: simulated camera + scripted speech + octopus_node + demo actuator (bundled model)"
	@echo "make test         ruff + pytest (multi-process DDS tests included)"
	@echo "make colcon-check build both packages with colcon in a scratch workspace"
	@echo "make train        train the bundled default model from scratch (all stages)"
	@echo "make evaluate     evaluate the bundled model on the held-out splits (3000 each), the natural set and the check set (runs/evaluate/)"
	@echo "make ablation     stage ablation (reduced, equal budgets)"
	@echo "make benchmark    model latency/memory benchmark, the native VLM shapes (SmolVLM-256M/500M, Qwen2-VL-2B), the lean onnxruntime runtime vs torch"
	@echo "make bench-node   node latency over DDS: prefetch on/off, node and transport overhead"
	@echo "make reliability  octopus_node vs hostile input: 10k fuzz, burst, broken models, allowlist, e-stop, 100 lifecycle cycles"
	@echo "make add-function-demo  add set_light(room, on) to the bundled model (LoRA, <= 10 min CPU): new function and old splits before/after"

setup:
	bash scripts/setup.sh

msgs:
	bash scripts/build_msgs.sh

demo:
	$(ENV) ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-42} python -m octopus_ros.demo.run_demo

test: lint
	$(ENV) python -m pytest octopus_ros/test -q

lint:
	$(ENV) ruff check octopus_ros benchmarks
	$(ENV) ruff format --check octopus_ros benchmarks

format:
	$(ENV) ruff format octopus_ros benchmarks && ruff check --fix octopus_ros benchmarks

colcon-check:
	$(ENV) bash scripts/colcon_check.sh

train:
	$(ENV) python -m octopus_ros.training.train_all --out octopus_ros/models/octopus_tiny

ablation:
	$(ENV) python -m octopus_ros.training.ablation --out runs/ablation --scale 0.1 --pool-calls 12000

evaluate:
	$(ENV) python -m octopus_ros.training.evaluate octopus_ros/models/octopus_tiny

benchmark:
	$(ENV) python benchmarks/bench_model.py
	$(ENV) python benchmarks/bench_vlm.py
	$(ENV) python benchmarks/bench_lean.py

bench-node:
	$(ENV) ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-43} python benchmarks/bench_node.py

reliability:
	$(ENV) ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-44} python benchmarks/reliability.py

add-function-demo:
	$(ENV) python -m octopus_ros.training.add_function_demo

clean:
	rm -rf build/ log/ install/ .pytest_cache
