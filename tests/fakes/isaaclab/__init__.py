"""Test double of Isaac Lab 3.0 (package `isaaclab`), written from its documented behaviour (tests/fakes/README.md).

FAKE_ISAACLAB_VERSION (environment) picks the modelled version: "3.0.0" (default) has the env configs'
`compute_final_obs` flag; "2.3.0" has none (no final observation before Isaac Lab 3)."""

import os

__version__ = os.environ.get("FAKE_ISAACLAB_VERSION", "3.0.0")
VERSION_MAJOR = int(__version__.split(".")[0])
