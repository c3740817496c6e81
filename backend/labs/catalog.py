"""Importing this module registers every lab. Add one line per new lab module."""

import backend.labs.attention  # noqa: F401
import backend.labs.attribution  # noqa: F401
import backend.labs.gating  # noqa: F401
import backend.labs.sample_efficiency  # noqa: F401
from backend.labs import predict  # noqa: F401
