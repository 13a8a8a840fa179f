"""Schemathesis hooks: every answer's operation and status, one JSON line each, appended to
the file $CAPSTAN_STATUSES (the property test compares them with the documented statuses);
and a registry login never leaves the machine."""

import json
import os

import schemathesis


@schemathesis.hook
def after_call(context, case, response):
    line = json.dumps([case.method.upper(), case.operation.path, response.status_code])
    with open(os.environ["CAPSTAN_STATUSES"], "a", encoding="utf-8") as out:
        out.write(line + "\n")


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    """A login is checked against the registry it names: any name that could be a registry
    (it has a dot or a port) becomes a loopback port nothing listens on, so generated logins
    reach no host but this one (and are answered 422, cannot reach)."""
    registry = path_parameters.get("registry") if path_parameters else None
    if isinstance(registry, str) and ("." in registry or ":" in registry):
        path_parameters["registry"] = "127.0.0.1:9"
    return path_parameters
