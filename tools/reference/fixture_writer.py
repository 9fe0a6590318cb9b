"""Shared by the fixture scripts in tools/reference: the installed versions recorded in a manifest,
the repository's git hash, and FixtureWriter (Tests/Fixtures/<group>/{data.bin, manifest.json}, read
by Tests/_TestSupport/Fixture.swift). Importing this module imports no reference library. (The
pinned-version check is refstack.check_versions, shared with the other reference-stack tools.)
"""
import importlib
import json
import os
import subprocess

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def installed_versions(names):
    """{module name: its __version__ without a local suffix ("2.15.0+cpu" -> "2.15.0")}."""
    return {name: importlib.import_module(name).__version__.split("+")[0] for name in names}


def git_hash():
    """HEAD of the repository holding this script, or None when git cannot tell (no git, no repo)."""
    try:
        result = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


class FixtureWriter:
    """Concatenates arrays into data.bin and records name -> dtype/shape/offset/bytes in manifest.json."""

    def __init__(self, group, meta):
        self.dir = os.path.join(ROOT, "Tests", "Fixtures", group)
        os.makedirs(self.dir, exist_ok=True)
        self.blob = bytearray()
        self.entries = {}
        self.meta = meta

    def add(self, name, array):
        array = np.ascontiguousarray(array)
        assert name not in self.entries, name
        self.entries[name] = {
            "dtype": str(array.dtype), "shape": list(array.shape),
            "offset": len(self.blob), "bytes": array.nbytes,
        }
        self.blob += array.tobytes()

    def close(self):
        with open(os.path.join(self.dir, "data.bin"), "wb") as f:
            f.write(self.blob)
        with open(os.path.join(self.dir, "manifest.json"), "w") as f:
            json.dump({"meta": self.meta, "tensors": self.entries}, f, indent=1, sort_keys=True)
        print(f"{self.dir}: {len(self.entries)} arrays, {len(self.blob)} bytes")
