"""Heavy cloud SDKs load only when a configured feature uses them (issue 18: memory, startup)."""

from __future__ import annotations

import subprocess
import sys

_HEAVY = ("boto3", "botocore", "s3transfer", "google.cloud", "google.auth", "google.oauth2")
_PROBE = (
    "import sys\n"
    "import sidecar.app.sidecar, sidecar.cli, sidecar.app.reconcile\n"
    "print('\\n'.join(sorted(sys.modules)))\n"
)


def test_the_sidecar_and_its_cli_import_no_cloud_sdk() -> None:
    # A fresh interpreter: this test process has long imported them for other tests.
    loaded = subprocess.run(
        [sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True, timeout=120
    ).stdout.split()
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(f"{h}.") for h in _HEAVY))
    assert heavy == [], f"loaded at import, before any feature asked for them: {heavy[:10]}"
