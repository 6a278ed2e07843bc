"""Typed requests: what Go's json.Unmarshal into dockerd's structs refuses, refused here.

dockerd decodes each request body into a Go struct, so `"Privileged": "false"` or
`"NetworkMode": 5` never reaches its code: the decoder answers with a message such as

    json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Privileged of type bool

naming the innermost struct, the path of JSON fields from the body's root (map keys and list
indexes left out) and the Go type that was wanted. Python's json module accepts any shape,
and a string where a bool belongs is truthy, so every body is checked against the types of
drivers/apitypes.py (generated from the Engine API spec) before any handler uses it:

    operation(method, path)        "POST /containers/{id}/restart": the spec's key for a request
    check_body(operation, value)   the body as Go would hold it, or InvalidParameter (400)
    check_struct(value, go_type)   the same for one struct (a container's stored config)
    check_query(operation, query)  integers as strconv parses them, enums, no NUL bytes
    go_strings(value)              lone UTF-16 surrogates become U+FFFD, as Go decodes them
    Number                         a JSON number with a fraction or exponent, keeping its text

What Go's decoder does and so check_body does too: null is any field's zero value (kept as
None, which callers read as unset; inside a list or map it becomes the element's zero value);
keys match fields case-insensitively and are stored under the field's own name; unknown keys
are ignored; an integer must be written without a fraction or exponent and fit its type
(int64 overflow is `cannot unmarshal number 1e30 into ... of type int64`); a strslice.StrSlice
(Cmd, Entrypoint, Shell, CapAdd, CapDrop) takes a lone string as a one-element list.

Query parameters are typed as dockerd's handlers parse them: integers with strconv.Atoi or
ParseInt, whose errors they repeat (`strconv.Atoi: parsing "1.5": invalid syntax`), enums
against the spec's values; booleans take any text (httputils.BoolValue), so they have no check.

One rule is pydockerd's own: a string or map key holding a NUL byte is refused (400), except
in labels. Go keeps it and dockerd fails later (at start, or with a 500), because no path,
argument, environment entry or name can carry one to the kernel; refused here, nothing is made.
"""
import re

from drivers import apitypes, errdefs

# Integer types by their range.
INTEGERS = {"int": (-2 ** 63, 2 ** 63 - 1), "int64": (-2 ** 63, 2 ** 63 - 1),
            "uint": (0, 2 ** 64 - 1), "uint64": (0, 2 ** 64 - 1), "uint16": (0, 2 ** 16 - 1),
            "uint32": (0, 2 ** 32 - 1)}
MAP_PREFIX = "map[string]"
LIST_PREFIX = re.compile(r"^\[[0-9]*\]")  # a slice, []T, or an array, [2]T
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
DECIMAL = re.compile(r"^[+-]?[0-9]+$")
# strconv's function for each integer query type, as named in its errors.
PARSERS = {"int": "strconv.Atoi", "int64": "strconv.ParseInt"}


class Number(float):
    """A JSON number with a fraction or exponent (json's parse_float): Go's messages quote
    the number as written (`number 1e30`), which a float's repr would not."""

    def __new__(cls, text):
        number = super().__new__(cls, text)
        number.text = text
        return number


def _templates():
    """The request keys of the tables, each with a pattern matching its concrete paths."""
    keys = set(apitypes.BODIES) | set(apitypes.QUERIES)
    return [(key, re.compile("^" + re.sub(r"\\\{[a-z]+\\\}", "[^/]+", re.escape(key)) + "$"))
            for key in sorted(keys)]


TEMPLATES = _templates()


def operation(method, path):
    """The tables' key for a request ("POST /containers/{id}/restart"), or None."""
    request = "%s %s" % (method, path)
    return next((key for key, pattern in TEMPLATES if pattern.match(request)), None)


def go_strings(value):
    """Every string of a decoded document (keys too) with lone surrogates replaced by
    U+FFFD: Python's json keeps "\\ud800" as a surrogate no encoder will write out again."""
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [go_strings(item) for item in value]
    if isinstance(value, dict):
        return {go_strings(key): go_strings(item) for key, item in value.items()}
    return value


def check_body(key, document):
    """The body of request `key` checked against its Go type; bodies the tables do not type
    (and absent ones, None) are returned as they are."""
    go_type = apitypes.BODIES.get(key)
    if go_type is None or document is None:
        return document
    return check_struct(document, go_type)


def check_struct(document, go_type):
    """`document` decoded as Go decodes into the struct `go_type`; InvalidParameter if not."""
    if not isinstance(document, dict):
        raise errdefs.InvalidParameter("json: cannot unmarshal %s into Go value of type %s"
                                       % (json_type(document), go_type))
    return _struct(document, go_type, ())


def check_query(key, query):
    """The typed query parameters of request `key` (query: name -> [values]); any NUL byte
    in any parameter is refused too, for the reason the module docstring gives."""
    for name, values in query.items():
        if any("\x00" in value for value in values):
            raise errdefs.InvalidParameter("invalid argument: NUL byte in query parameter %s"
                                           % name)
    for name, kind in apitypes.QUERIES.get(key, {}).items():
        for value in query.get(name, ()):
            if value:
                _check_query_value(name, kind, value)


def _check_query_value(name, kind, value):
    if isinstance(kind, list):
        if value not in kind:
            raise errdefs.InvalidParameter("invalid %s: %s" % (name, value))
        return
    lowest, highest = INTEGERS[kind]
    if not DECIMAL.match(value):
        raise errdefs.InvalidParameter('%s: parsing "%s": invalid syntax' % (PARSERS[kind], value))
    if not lowest <= int(value) <= highest:
        raise errdefs.InvalidParameter('%s: parsing "%s": value out of range'
                                       % (PARSERS[kind], value))


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


class _Field(object):
    """Where a value sits, for the message: the innermost struct and the field path."""

    def __init__(self, struct, path):
        self.struct, self.path = struct, path

    def mismatch(self, value, go_type, number=False):
        shown = json_type(value)
        if number:  # Go quotes the number it could not fit
            shown += " " + (value.text if isinstance(value, Number) else str(value))
        return errdefs.InvalidParameter("json: cannot unmarshal %s into Go struct field %s.%s "
                                        "of type %s" % (shown, self.struct, ".".join(self.path),
                                                        go_type))


def _struct(document, go_type, path):
    fields = apitypes.STRUCTS[go_type]
    by_folded_name = {name.lower(): name for name in fields}
    struct = go_type.rsplit(".", 1)[-1]
    result = {}
    for key, value in document.items():
        name = key if key in fields else by_folded_name.get(key.lower())
        if name is None:
            result[key] = value  # Go ignores unknown fields; so do the handlers
            continue
        field = _Field(struct, path + (name,))
        result[name] = None if value is None else _value(value, fields[name], field)
    return result


def _value(value, go_type, field):
    """One non-null value of `go_type`, as Go holds it."""
    go_type = go_type.lstrip("*")  # a pointer takes what it points to
    if go_type in apitypes.STRUCTS:
        if not isinstance(value, dict):
            raise field.mismatch(value, go_type)
        return _struct(value, go_type, field.path)
    if go_type == "strslice.StrSlice" and isinstance(value, str):
        return [_value(value, "string", field)]
    shape = apitypes.NAMED.get(go_type, go_type)
    listed = LIST_PREFIX.match(shape)
    if listed:
        if not isinstance(value, list):  # StrSlice's own decoder names the string it tried last
            raise field.mismatch(value, "string" if go_type == "strslice.StrSlice" else go_type)
        return [_element(item, shape[listed.end():], field) for item in value]
    if shape.startswith(MAP_PREFIX):
        if not isinstance(value, dict):
            raise field.mismatch(value, go_type)
        labels = field.path[-1] == "Labels"
        if not labels and any("\x00" in key for key in value):  # keys are paths and ports too
            raise _nul(field)
        return {key: _element(item, shape[len(MAP_PREFIX):], field, labels)
                for key, item in value.items()}
    return _scalar(value, shape, go_type, field)


def _element(value, go_type, field, labels=False):
    """A list item or map value: null is the element type's zero value."""
    if value is None:
        return _zero(go_type)
    if labels and isinstance(value, str):
        return value  # a label is only ever shown back: it may hold any text
    return _value(value, go_type, field)


def _scalar(value, shape, go_type, field):
    if shape == "string":
        if not isinstance(value, str):
            raise field.mismatch(value, go_type)
        if "\x00" in value:
            raise _nul(field)
    elif shape == "bool":
        if not isinstance(value, bool):
            raise field.mismatch(value, go_type)
    elif shape in INTEGERS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise field.mismatch(value, go_type)
        lowest, highest = INTEGERS[shape]
        if isinstance(value, float) or not lowest <= value <= highest:
            raise field.mismatch(value, go_type, number=True)
    elif shape == "float64":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise field.mismatch(value, go_type)
        if value in (float("inf"), float("-inf")):  # "1e400" overflows a float64
            raise field.mismatch(value, go_type, number=True)
    elif shape == "struct {}":
        if not isinstance(value, dict):
            raise field.mismatch(value, go_type)
    return value


def _nul(field):
    return errdefs.InvalidParameter("invalid argument: NUL byte in Go struct field %s.%s"
                                    % (field.struct, ".".join(field.path)))


def _zero(go_type):
    if go_type.startswith("*"):
        return None  # a nil pointer
    shape = apitypes.NAMED.get(go_type, go_type)
    if go_type in apitypes.STRUCTS or shape == "struct {}":
        return {}
    return {"string": "", "bool": False, "float64": 0.0}.get(shape, 0 if shape in INTEGERS else None)
