#!/usr/bin/env python3
# ruff: noqa: E501  (the module docstring quotes a kubeconform template that cannot be wrapped)
"""Write standalone, strict Kubernetes JSON schemas for kubeconform, offline.

kubeconform needs one self-contained schema per kind (no remote $ref). Two sources:

  --from-kubernetes-validate DIR   a `vX.Y.0-local-strict` folder of the pinned PyPI package
                                   kubernetes-validate (its $refs point at a shared _definitions.json,
                                   which this script inlines)
  --apiserver URL --token-file F   a running kube-apiserver's /openapi/v2 (e.g. the e2e harness's;
    [--ca-file F]                  --ca-file for its CA), converted the way openapi2jsonschema does
                                   (strict: additionalProperties false)

Output: OUT/vX.Y.0-standalone-strict/<kind>-<group>-<version>.json, kubeconform's default layout:
  kubeconform -strict -kubernetes-version X.Y.0 -schema-location \
    'OUT/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json'
(tests/deploy/kubeschemas.py builds that argument.)
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import ssl
import sys
import urllib.request
from pathlib import Path
from typing import Any

Json = Any
# Top-level schemas point into /api/_definitions.json; definitions point at each other with #/$defs/.
LOCAL_REF = re.compile(r"^(?:/api/_definitions\.json)?#/\$defs/(.+)$")


def _refs(node: Json) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.add(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _rewrite(node: Json, pattern: re.Pattern[str]) -> Json:
    if isinstance(node, dict):
        out = {k: _rewrite(v, pattern) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str):
            match = pattern.match(ref)
            if match:
                out["$ref"] = f"#/$defs/{match.group(1)}"
        return out
    if isinstance(node, list):
        return [_rewrite(v, pattern) for v in node]
    return node


def _closure(root: Json, defs: dict[str, Json], pattern: re.Pattern[str]) -> dict[str, Json]:
    """The definitions `root` needs, transitively."""
    needed: dict[str, Json] = {}
    todo = [root]
    while todo:
        for ref in _refs(todo.pop()):
            match = pattern.match(ref)
            if not match:
                continue
            name = match.group(1)
            if name not in needed:
                if name not in defs:
                    raise SystemExit(f"gen-kube-schemas: unresolved $ref {ref}")
                needed[name] = defs[name]
                todo.append(defs[name])
    return needed


def standalone(schema: Json, defs: dict[str, Json], pattern: re.Pattern[str]) -> Json:
    needed = _closure(schema, defs, pattern)
    out = _rewrite(schema, pattern)
    if needed:
        out["$defs"] = {name: _rewrite(d, pattern) for name, d in needed.items()}
    return out


def from_kubernetes_validate(source: Path, out: Path) -> int:
    defs = json.loads((source / "_definitions.json").read_text())["$defs"]
    written = 0
    for path in sorted(source.glob("*.json")):
        if path.name in ("_definitions.json", "all.json"):
            continue
        schema = json.loads(path.read_text())
        (out / path.name).write_text(json.dumps(standalone(schema, defs, LOCAL_REF), separators=(",", ":")))
        written += 1
    return written


# --- from a kube-apiserver's OpenAPI v2 ------------------------------------------------------------

OPENAPI_REF = re.compile(r"^#/definitions/(.+)$")


def _strict(node: Json) -> Json:
    """openapi2jsonschema's strict mode: objects with properties reject unknown fields; optional
    values may be null (the apiserver drops nulls)."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if out.get("format") == "int-or-string":
            out.pop("type", None)
            out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def from_apiserver(url: str, token_file: Path, ca_file: Path | None, out: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else ssl.create_default_context()
    request = urllib.request.Request(
        url.rstrip("/") + "/openapi/v2",
        headers={"Authorization": f"Bearer {token_file.read_text().strip()}", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60, context=context) as response:
        spec = json.load(response)
    raw = spec["definitions"]
    defs = {name: _strict(_rewrite_openapi(d)) for name, d in raw.items()}
    pattern = re.compile(r"^#/\$defs/(.+)$")
    written = 0
    for name, schema in defs.items():
        for gvk in raw[name].get("x-kubernetes-group-version-kind", []):
            group = gvk["group"].split(".")[0]
            suffix = f"-{group}-{gvk['version']}" if group else f"-{gvk['version']}"
            body = copy.deepcopy(schema)
            props = body.get("properties", {})
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            if "apiVersion" in props:
                props["apiVersion"]["enum"] = [api_version]
            if "kind" in props:
                props["kind"]["enum"] = [gvk["kind"]]
            path = out / f"{gvk['kind'].lower()}{suffix.lower()}.json"
            path.write_text(json.dumps(standalone(body, defs, pattern), separators=(",", ":")))
            written += 1
    return written


def _rewrite_openapi(node: Json) -> Json:
    if isinstance(node, dict):
        out = {k: _rewrite_openapi(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and OPENAPI_REF.match(ref):
            out["$ref"] = "#/$defs/" + OPENAPI_REF.match(ref).group(1)  # type: ignore[union-attr]
        return out
    if isinstance(node, list):
        return [_rewrite_openapi(v) for v in node]
    return node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="cache folder for the schema sets")
    parser.add_argument(
        "--kube-version", required=True, help="e.g. 1.35 or v1.35.8 (the minor is what counts)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-kubernetes-validate", type=Path, metavar="DIR")
    source.add_argument("--apiserver", metavar="URL")
    parser.add_argument("--token-file", type=Path)
    parser.add_argument("--ca-file", type=Path)
    args = parser.parse_args(argv)
    major, minor = args.kube_version.lstrip("v").split(".")[:2]
    target = args.out / f"v{major}.{minor}.0-standalone-strict"
    staging = target.with_name(target.name + ".tmp")
    staging.mkdir(parents=True, exist_ok=True)
    if args.apiserver:
        if not args.token_file:
            parser.error("--apiserver needs --token-file")
        count = from_apiserver(args.apiserver, args.token_file, args.ca_file, staging)
    else:
        count = from_kubernetes_validate(args.from_kubernetes_validate, staging)
    if count == 0:
        raise SystemExit("gen-kube-schemas: no schemas written")
    # Replace the whole set at once so a reader never sees half of it.
    if target.exists():
        for old in target.iterdir():
            old.unlink()
        target.rmdir()
    staging.rename(target)
    print(f"gen-kube-schemas: {count} schemas in {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
