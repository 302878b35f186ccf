"""The real-model suite runs offline: transformers builds its models from configs only."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
