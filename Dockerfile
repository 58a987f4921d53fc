# Ponder on a CUDA GPU: the in-process vLLM engine (`.[gpu]`).
# Build:  docker build -t ponder .
# Run:    docker run --gpus all -p 8000:8000 -v ~/.cache/huggingface:/root/.cache/huggingface \
#           ponder --model Qwen/Qwen2.5-1.5B-Instruct --tensor-parallel-size 1
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv $VIRTUAL_ENV

WORKDIR /app
# Dependencies first, so code changes do not reinstall vLLM: an empty `ponder` package stands in for the code.
COPY pyproject.toml README.md ./
RUN mkdir ponder && touch ponder/__init__.py \
 && pip install --upgrade pip \
 && pip install '.[gpu]'

# The code and the bundled models (ponder/models, package data): a regular install, then the sources go, so only
# the installed package can be imported. No PONDER_MODELS_DIR: the models are found inside the package.
COPY ponder ./ponder
RUN pip install --no-deps --force-reinstall . \
 && cd / && rm -rf /app
WORKDIR /

EXPOSE 8000
# vLLM needs shared memory between its processes: run with --ipc=host or --shm-size=8g.
ENTRYPOINT ["ponder", "serve", "--engine", "vllm", "--host", "0.0.0.0", "--port", "8000"]
