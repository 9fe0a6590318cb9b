"""What the scripts that run the pinned reference stack (torch, transformers, peft, bitsandbytes,
gguf; /work/refvenv) share: the pinned-version check, quieting the stack's import-time chatter,
and the machine facts and JSON output of the benchmark scripts.

Importing this module imports no reference library (standard library only), so a script can
check the versions before it imports torch. Scripts in tools/reference import it directly;
scripts in tools/ first put tools/reference on sys.path:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
    from refstack import check_versions
"""
import json
import logging
import os
import platform
import sys

# What a mismatch says to do, by default (the scripts with an --allow-other-versions flag).
USE_REFVENV = "use /work/refvenv/bin/python, or --allow-other-versions"
# For the fixture writers, which have no such flag: the fixtures must come from the pinned stack.
INSTALL_PINNED = "install the pinned versions: tools/reference/README.md"


def package_versions(names):
    """{distribution name: installed version, or None when it is not installed}."""
    import importlib.metadata as md
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def check_versions(pinned, allow_other=False, hint=USE_REFVENV):
    """Compare the installed distributions with `pinned` (name -> version; None: any version, but
    installed; "X.Y.*": any X.Y release). A local suffix is ignored ("2.15.0+cpu" is 2.15.0).
    On a mismatch: exit with "error: reference stack version mismatch: ... (hint)", or with
    allow_other print the same as a warning on stderr and go on.
    Returns {"python": ..., name: version} of what is installed (for a report's "versions")."""
    installed = package_versions(pinned)
    bad = []
    for pkg, want in pinned.items():
        v = installed[pkg]
        if v is None:
            bad.append(f"{pkg} not installed (want {want or 'any'})")
            continue
        if want is None:
            continue
        v = v.split("+")[0]
        ok = v.startswith(want[:-1]) if want.endswith(".*") else v == want
        if not ok:
            bad.append(f"{pkg} {installed[pkg]} (want {want})")
    if bad:
        msg = "reference stack version mismatch: " + "; ".join(bad)
        if not allow_other:
            sys.exit(f"error: {msg} ({hint})")
        print("warning: " + msg, file=sys.stderr)
    found = {"python": platform.python_version()}
    found.update((pkg, v) for pkg, v in installed.items() if v is not None)
    return found


def quiet_reference_stack():
    """Before importing the stack: silence bitsandbytes' import-time "kernels-community" warning
    (an optional hub kernel), keep the Hugging Face hub offline, and turn off transformers'
    advisory warnings and tqdm progress bars (e.g. GGUF de-quantization's)."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_NO_ADVISORY_WARNINGS", "TQDM_DISABLE"):
        os.environ.setdefault(var, "1")


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (else platform.processor(), else "unknown")."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg():
    """The 1-minute load average, or None where the platform cannot tell."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def warn_if_busy(limit=0.5):
    """Warn on stderr when the machine is already busy before a benchmark starts."""
    la = loadavg()
    if la is not None and la > limit:
        print(f"WARNING: 1-minute load average is {la:.2f} before starting: other processes are using the "
              f"CPU, timings will be noisy", file=sys.stderr)


def write_json(path, obj, indent):
    """Write obj as JSON (with a final newline) to path and say so on stdout."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")
    print(f"wrote {path}")
