"""Compiles contracts/Coalition.sol into the committed artifact contracts/build/Coalition.json.

`python -m tclearn.ledger.compiler` rebuilds the artifact; `--check` recompiles and exits 1 if the
committed artifact differs from what the source compiles to (CI runs this). The compiler is solc-js
(npm `solc`, pinned in contracts/package.json); a native `solc` of the same version, where installed,
is used instead through py-solc-x. Both produce identical bytecode. Nothing is ever downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tclearn.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "contracts"
SOURCE = CONTRACTS / "Coalition.sol"
ARTIFACT = CONTRACTS / "build" / "Coalition.json"
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "paris",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}
_SOLCJS = (
    "const solc=require('solc');const input=require('fs').readFileSync(0,'utf8');"
    "process.stdout.write(JSON.stringify({version:solc.version(),output:JSON.parse(solc.compile(input))}))"
)


def pinned_solc_version() -> str:
    package = json.loads((CONTRACTS / "package.json").read_text())
    return str(package["devDependencies"]["solc"])


def _native_solc(version: str) -> tuple[Path, str] | None:
    """A native solc of exactly `version` on PATH and its full version, if any (never installs one)."""
    path = shutil.which("solc")
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if line.startswith(f"Version: {version}+"):
            return Path(path), line.removeprefix("Version: ").strip()
    return None


def _compile_standard(source: str) -> tuple[str, dict[str, Any]]:
    version = pinned_solc_version()
    standard = {"language": "Solidity", "sources": {SOURCE.name: {"content": source}}, "settings": SETTINGS}
    native = _native_solc(version)
    if native is not None:
        import solcx

        path, full_version = native
        return full_version, solcx.compile_standard(standard, solc_binary=path)
    node_modules = CONTRACTS / "node_modules"
    if not (node_modules / "solc").is_dir():
        raise ConfigError(f"solc-js is not installed in {node_modules}; run `make chain-tools`")
    proc = subprocess.run(
        ["node", "-e", _SOLCJS],
        input=json.dumps(standard),
        capture_output=True,
        text=True,
        cwd=CONTRACTS,
        check=False,
    )
    if proc.returncode != 0:
        raise ConfigError(f"solc-js failed: {proc.stderr.strip()}")
    result = json.loads(proc.stdout)
    return str(result["version"]), result["output"]


def build_artifact() -> dict[str, Any]:
    source = SOURCE.read_text()
    version, output = _compile_standard(source)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ConfigError("Coalition.sol does not compile:\n" + "\n".join(e["formattedMessage"] for e in errors))
    contract = output["contracts"][SOURCE.name]["Coalition"]
    return {
        "contractName": "Coalition",
        "sourceName": f"contracts/{SOURCE.name}",
        "sourceSha256": hashlib.sha256(source.encode()).hexdigest(),
        # "0.8.37+commit.f401782d": the platform suffix differs between solc-js and native solc
        "compiler": {"name": "solc", "version": ".".join(version.removeprefix("v").split(".")[:4])},
        "settings": {k: v for k, v in SETTINGS.items() if k != "outputSelection"},
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
    }


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed artifact is out of date")
    args = parser.parse_args(argv)
    try:
        fresh = render(build_artifact())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        committed = ARTIFACT.read_text() if ARTIFACT.exists() else ""
        if committed != fresh:
            print(f"error: {ARTIFACT} is out of date; run `make contracts`", file=sys.stderr)
            return 1
        print(f"{ARTIFACT} matches {SOURCE}")
        return 0
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(fresh)
    print(f"wrote {ARTIFACT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
