"""Where the tests find the repository's files, whatever folder a test sits in."""

from pathlib import Path

SUPPORT = Path(__file__).resolve().parent  # the third-party test packages, bad suites, helpers
REPO = SUPPORT.parents[1]  # the checkout: aebench/, benchmarks/, README.md
SHARED = REPO.parent / "shared"  # the workplace's read-only data, beside the checkout
