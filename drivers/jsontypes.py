"""Typed request bodies: what Go's json.Unmarshal into dockerd's structs refuses, refused here.

dockerd decodes each request body into a Go struct, so `"Internal": "false"` or `"Name": 5`
never reaches its code: the decoder answers 400 with a message such as

    json: cannot unmarshal string into Go struct field NetworkCreateRequest.Internal of type bool

Python's json module accepts any shape, and a string where a bool belongs is truthy, so every
body is checked against a small schema before use. A schema maps a field to one of the kinds
below, or to a nested schema (a dict) for a struct, or to [schema] for a list of structs; a
schema {"*": kind} is a map whose every value has that kind.
"""
from drivers import errdefs

# kind -> (Go type name, test)
KINDS = {
    "string": ("string", lambda v: isinstance(v, str)),
    "bool": ("bool", lambda v: isinstance(v, bool)),
    "int": ("int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "[]string": ("[]string", lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v)),
    "map[string]string": ("map[string]string",
                          lambda v: isinstance(v, dict) and all(isinstance(i, str) for i in v.values())),
}


def json_type(value):
    """The JSON type's name as Go's decoder says it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def check(document, schema, struct):
    """Raise InvalidParameter for the first field of the wrong type; null is always fine
    (the field keeps its zero value, as in Go). Fields the schema does not name pass."""
    if document is None:
        return
    if not isinstance(document, dict):
        raise _mismatch(document, struct, "", "struct")
    fields = {key: schema["*"] for key in document} if "*" in schema else schema
    for key, kind in fields.items():
        value = document.get(key)
        if value is None:
            continue
        if isinstance(kind, dict):
            check(value, kind, struct + "." + key)
        elif isinstance(kind, list):
            if not isinstance(value, list):
                raise _mismatch(value, struct, key, "[]struct")
            for item in value:
                check(item, kind[0], struct + "." + key)
        elif not KINDS[kind][1](value):
            raise _mismatch(value, struct, key, KINDS[kind][0])


def _mismatch(value, struct, key, go_type):
    field = "%s.%s" % (struct, key) if key else struct
    return errdefs.InvalidParameter("json: cannot unmarshal %s into Go struct field %s of type %s"
                                    % (json_type(value), field, go_type))
