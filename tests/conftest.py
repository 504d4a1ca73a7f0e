"""Test-wide settings: every pipeline run in the tests verifies after each pass."""

import os

os.environ["TENSOROPT_VERIFY"] = "1"
