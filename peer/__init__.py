"""Headless Python peer: identity, averaging core, frame verification, WebRTC mesh, trainer."""

import os

# Before any TensorFlow import: quiet logs, and no tensorflow_decision_forests banner (pulled in
# by tensorflowjs), which tries to import IPython when stdout is not a terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
