# gepa-bot as a container action / standalone image: `docker run ... gepa-bot-image` runs `gepa-bot action`
# with the environment GitHub Actions sets (GITHUB_EVENT_PATH, GITHUB_WORKSPACE, INPUT_TOKEN or GITHUB_TOKEN, ...).
FROM python:3.11-slim

# git: gepa-bot commits and pushes the gepa-bot/<branch> branch and fetches same-repo PR heads.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    # GitHub mounts the workspace owned by another uid; without this git refuses it ("dubious ownership").
    && git config --system --add safe.directory '*'

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True

WORKDIR /opt/gepa-bot
COPY pyproject.toml README.md ./
COPY gepa_bot ./gepa_bot
COPY scripts ./scripts
RUN pip install . && gepa-bot --help > /dev/null

ENTRYPOINT ["gepa-bot", "action"]
