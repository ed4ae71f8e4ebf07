#!/usr/bin/env python3
"""Validate rendered Kubernetes manifests offline.

Reads YAML documents (the output of `kubectl kustomize`) from the files given; core objects are
checked with kubernetes-validate in strict mode against Kubernetes KUBERNETES_VERSION, PodMonitors
and PrometheusRules against the committed prometheus-operator schemas (deploy/schemas). Prints one
line per object; exits 1 on any error.
"""
import json
import pathlib
import sys
import tempfile

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.37.0"
SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "schemas"
CUSTOM = {
    ("monitoring.coreos.com/v1", "PodMonitor"): SCHEMAS / "podmonitor.monitoring.coreos.com_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): SCHEMAS / "prometheusrule.monitoring.coreos.com_v1.json",
}


def main(paths):
    failures = 0
    for path in paths:
        for doc in yaml.safe_load_all(pathlib.Path(path).read_text()):
            if not doc:
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            name = f"{path}: {key[1]}/{doc.get('metadata', {}).get('name')}"
            try:
                if key in CUSTOM:
                    schema = json.loads(CUSTOM[key].read_text())
                    jsonschema.validate(doc, schema)
                else:
                    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                print(f"ok   {name}")
            except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as err:
                failures += 1
                print(f"FAIL {name}: {getattr(err, 'message', err)}")
            except kubernetes_validate.SchemaNotFoundError as err:
                failures += 1
                print(f"FAIL {name}: no schema ({err})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
