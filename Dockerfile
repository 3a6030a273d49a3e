# gepa-bot as a container, for a docker action or any other CI (GitLab, Jenkins): `docker run ... IMAGE` runs
# `gepa-bot action` with the environment GitHub Actions sets (GITHUB_EVENT_PATH, GITHUB_WORKSPACE, INPUT_* or
# GITHUB_TOKEN, ...); `docker run --entrypoint gepa-bot IMAGE optimize --repo /work --dry-run` runs the CLI.
# The embedded local model (Qwen2.5-Coder-1.5B, 1.1 GB, hash-checked) and llama-cpp-python are included, so
# the defaults run with no API key. gepa-bot lives in its own venv, installed from the hash-locked
# requirements.lock. Build: `docker build -t gepa-bot .` (offline: docs/releasing.md, buildah with a local base).
FROM python:3.11-slim

# git: gepa-bot commits and pushes the bot's branch; a compiler and cmake build llama-cpp-python.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git build-essential cmake \
    && rm -rf /var/lib/apt/lists/* \
    # GitHub mounts the workspace owned by another uid; without this git refuses it ("dubious ownership").
    && git config --system --add safe.directory '*'

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    VIRTUAL_ENV=/opt/gepa-bot/venv \
    PATH=/opt/gepa-bot/venv/bin:$PATH \
    GEPA_BOT_MODEL_DIR=/opt/gepa-bot/models

WORKDIR /opt/gepa-bot
COPY requirements.lock pyproject.toml README.md ./
COPY gepa_bot ./gepa_bot
COPY scripts ./scripts
COPY prompts.example ./prompts.example
RUN python3 -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir --require-hashes -r requirements.lock \
    && pip install --no-cache-dir --no-deps . \
    && PYTHON=python scripts/install-local-model \
    && rm -rf /root/.cache/pip \
    && gepa-bot --help > /dev/null \
    && gepa-bot model serve --help > /dev/null

ENTRYPOINT ["gepa-bot", "action"]
