#!/usr/bin/env python3
"""Regenerate sidecar/opa_capabilities.json from the pinned OPA (run after bumping OPA).

Usage: .venv/bin/python scripts/opa-capabilities.py [--check]
"""

from __future__ import annotations

import json
import subprocess
import sys

from sidecar.tools import OPA_CAPABILITIES, find_tool, sandbox_capabilities, sandbox_env


def render() -> str:
    """Return the capabilities file's text for the pinned OPA."""
    done = subprocess.run(
        [str(find_tool("opa")), "capabilities", "--current"],
        capture_output=True, text=True, check=True, env=sandbox_env(),
    )  # fmt: skip
    return json.dumps(sandbox_capabilities(json.loads(done.stdout)), indent=1, sort_keys=True) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if OPA_CAPABILITIES.read_text(encoding="utf-8") != text:
            print(f"{OPA_CAPABILITIES} is stale: run scripts/opa-capabilities.py", file=sys.stderr)
            return 1
        return 0
    OPA_CAPABILITIES.write_text(text, encoding="utf-8")
    print(f"wrote {OPA_CAPABILITIES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
