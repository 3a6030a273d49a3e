"""gepa-bot: optimize the prompts in a repository with GEPA and open a pull request."""

import os

# litellm must never fetch its price table over the network (CI runners, offline tests): set before any
# gepa_bot module can import litellm, in this one place.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"
