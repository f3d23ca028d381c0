"""Stand-in for Isaac Gym Preview 4's `isaacgym` package (tests only; see tests/fakes/README.md)."""
import sys

if "torch" in sys.modules:
    raise ImportError("PyTorch was imported before isaacgym modules.  Please import torch after isaacgym modules.")

FAKE = True  # lets a test tell the stand-in from the real package
