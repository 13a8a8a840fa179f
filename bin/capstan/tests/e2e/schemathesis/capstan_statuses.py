"""A schemathesis hook: every answer's operation and status, one JSON line each, appended to
the file $CAPSTAN_STATUSES (the property test compares them with the documented statuses)."""

import json
import os

import schemathesis


@schemathesis.hook
def after_call(context, case, response):
    line = json.dumps([case.method.upper(), case.operation.path, response.status_code])
    with open(os.environ["CAPSTAN_STATUSES"], "a", encoding="utf-8") as out:
        out.write(line + "\n")
