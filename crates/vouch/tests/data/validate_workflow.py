"""Validate a GitHub Actions workflow file (YAML) against a JSON schema (SchemaStore's
github-workflow.json): prints each error and exits 1 if there is any.

usage: validate_workflow.py SCHEMA.json WORKFLOW.yml

YAML 1.1 reads the key `on` as the boolean true; GitHub reads it as the string "on", so the
loader here takes only true/false as booleans, as GitHub's parser does.
"""
import json
import re
import sys

import jsonschema
import yaml


class Loader(yaml.SafeLoader):
    pass


for first in list(Loader.yaml_implicit_resolvers):
    Loader.yaml_implicit_resolvers[first] = [
        r for r in Loader.yaml_implicit_resolvers[first] if r[0] != "tag:yaml.org,2002:bool"
    ]
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

with open(sys.argv[1]) as f:
    schema = json.load(f)
with open(sys.argv[2]) as f:
    doc = yaml.load(f, Loader=Loader)
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(map(str, e.path)))
for e in errors:
    print("/".join(map(str, e.path)) or "(top)", ":", e.message[:300])
print(f"{len(errors)} error(s)")
sys.exit(1 if errors else 0)
