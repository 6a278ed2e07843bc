"""Write drivers/apitypes.py: the Engine API's request types, read from the Swagger 2.0 spec.

    python3 tests/gen_apitypes.py [OUTPUT]          (`make apitypes`; OUTPUT defaults to
                                                     drivers/apitypes.py)

The daemon checks every JSON body and typed query parameter against the table this writes
(drivers/jsontypes.py), so the types come from tests/fixtures/engine-api-v1.41.yaml rather
than being typed again by hand; the runtime needs no YAML parser because the table is plain
Python, checked in, and tests/test_apitypes.py regenerates it and compares byte for byte.

What the table holds, for the routes pydockerd serves (swarm, plugins and sessions are not
served: their routes answer 404 before a body is read):

    BODIES    "METHOD /path/{template}" -> the Go type dockerd decodes the body into
    QUERIES   "METHOD /path/{template}" -> {parameter: "int" | "int64" | (enum values...)}
    STRUCTS   Go struct type -> {JSON field: Go type}, embedded structs flattened (allOf)
    NAMED     Go named types that are not structs -> the type they are declared as

Types are written as Go prints them, since dockerd's messages name them that way:
`json: cannot unmarshal number into Go struct field HostConfig.HostConfig.NetworkMode of type
container.NetworkMode`. The spec does not name Go's types, and in places it is wrong about
what dockerd's decoder takes; every such difference is an entry of GO_TYPES or QUERY_TYPES
below, with the reason beside it. Two rules hold for every field, so they are not entries:
null is accepted anywhere (Go leaves the zero value; `"Env": null` is fine though the spec
never says x-nullable), and enums of body fields are not part of the decoding (Go's decoder
takes any string; dockerd's own checks refuse a bad restart policy, mount type, isolation or
log driver later, in their own words), so only query enums are kept.
"""
import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "fixtures", "engine-api-v1.41.yaml")
OUTPUT = os.path.join(HERE, os.pardir, "drivers", "apitypes.py")

# Path prefixes pydockerd does not serve (no swarm mode, no plugins, no BuildKit sessions).
UNSERVED = ("/swarm", "/nodes", "/services", "/tasks", "/secrets", "/configs", "/plugins",
            "/session", "/containers/{id}/attach/ws", "/images/search")

# Spec definition (or "Definition.Field" for an inline object) -> Go type, where Go's name is
# not the definition's own. Definitions not listed are in package types.
GO_NAMES = {
    "ContainerConfig": "container.Config",
    "HostConfig": "container.HostConfig",
    "HostConfig.LogConfig": "container.LogConfig",
    "Resources.BlkioWeightDevice": "blkiodev.WeightDevice",
    "Resources.Ulimits": "units.Ulimit",
    "ThrottleDevice": "blkiodev.ThrottleDevice",
    "DeviceMapping": "container.DeviceMapping",
    "DeviceRequest": "container.DeviceRequest",
    "RestartPolicy": "container.RestartPolicy",
    "HealthConfig": "container.HealthConfig",
    "Mount": "mount.Mount",
    "Mount.BindOptions": "mount.BindOptions",
    "Mount.VolumeOptions": "mount.VolumeOptions",
    "Mount.VolumeOptions.DriverConfig": "mount.Driver",
    "Mount.TmpfsOptions": "mount.TmpfsOptions",
    "PortBinding": "nat.PortBinding",
    "NetworkingConfig": "network.NetworkingConfig",
    "EndpointSettings": "network.EndpointSettings",
    "EndpointIPAMConfig": "network.EndpointIPAMConfig",
    "IPAM": "network.IPAM",
    "IPAMConfig": "network.IPAMConfig",
    "ConfigReference": "network.ConfigReference",
    "VolumeCreateOptions": "volume.VolumeCreateBody",
}

# The body of each served operation that takes JSON, by the Go type dockerd decodes it into.
# ContainerConfigWrapper embeds container.Config and adds HostConfig and NetworkingConfig;
# UpdateConfig embeds Resources and adds RestartPolicy (the spec's allOf says the same).
BODIES = {
    "POST /auth": "types.AuthConfig",
    # The spec says ContainerConfig; dockerd decodes commit's body with the create wrapper
    # (its message for {"User":5} names ContainerConfigWrapper.User).
    "POST /commit": "runconfig.ContainerConfigWrapper",
    "POST /containers/create": "runconfig.ContainerConfigWrapper",
    "POST /containers/{id}/exec": "types.ExecConfig",
    "POST /containers/{id}/update": "container.UpdateConfig",
    "POST /exec/{id}/start": "types.ExecStartCheck",
    "POST /networks/create": "types.NetworkCreateRequest",
    "POST /networks/{id}/connect": "types.NetworkConnect",
    "POST /networks/{id}/disconnect": "types.NetworkDisconnect",
    "POST /volumes/create": "volume.VolumeCreateBody",
}

# "Definition.Field" -> Go type, where the spec's type is not what dockerd's decoder takes.
GO_TYPES = {
    # strslice.StrSlice: a JSON string is taken as a one-element list (`"CapDrop": "ALL"`,
    # `"Cmd": "echo"`), though the spec says array.
    "ContainerConfig.Cmd": "strslice.StrSlice",
    "ContainerConfig.Entrypoint": "strslice.StrSlice",
    "ContainerConfig.Shell": "strslice.StrSlice",
    "HostConfig.CapAdd": "strslice.StrSlice",
    "HostConfig.CapDrop": "strslice.StrSlice",
    # Named types: the same JSON, but dockerd's messages name them.
    "ContainerConfig.ExposedPorts": "nat.PortSet",
    "HealthConfig.Interval": "time.Duration",
    "HealthConfig.Timeout": "time.Duration",
    "HealthConfig.StartPeriod": "time.Duration",
    "HostConfig.NetworkMode": "container.NetworkMode",
    "HostConfig.IpcMode": "container.IpcMode",
    "HostConfig.PidMode": "container.PidMode",
    "HostConfig.UTSMode": "container.UTSMode",
    "HostConfig.UsernsMode": "container.UsernsMode",
    "HostConfig.CgroupnsMode": "container.CgroupnsMode",
    "HostConfig.Cgroup": "container.CgroupSpec",
    "HostConfig.Isolation": "container.Isolation",
    "Mount.Type": "mount.Type",  # the spec gives only an enum, no type
    "Mount.Consistency": "mount.Consistency",
    "Mount.BindOptions.Propagation": "mount.Propagation",
    # Integers the spec leaves without a format, or gives a range, that Go declares otherwise:
    # the Resources are int64 throughout but for BlkioWeight (uint16) and the IO maximums
    # (uint64, so -1 is refused), the console size is a [2]uint, a tmpfs mode an os.FileMode
    # (uint32), a ulimit's values int64, an endpoint's GlobalIPv6PrefixLen an int.
    "Resources.IOMaximumBandwidth": "uint64",
    "Resources.IOMaximumIOps": "uint64",
    "EndpointSettings.GlobalIPv6PrefixLen": "int",
    "Resources.CpuShares": "int64",
    "Resources.BlkioWeight": "uint16",
    "HostConfig.ConsoleSize": "[2]uint",
    "Mount.TmpfsOptions.Mode": "fs.FileMode",
    "Resources.Ulimits.Soft": "int64",
    "Resources.Ulimits.Hard": "int64",
    "Resources.BlkioWeightDevice.Weight": "uint16",
    "ThrottleDevice.Rate": "uint64",
    # Lists and maps of pointers: the same JSON, named so in dockerd's messages.
    "Resources.BlkioWeightDevice": "[]*blkiodev.WeightDevice",
    "Resources.BlkioDeviceReadBps": "[]*blkiodev.ThrottleDevice",
    "Resources.BlkioDeviceWriteBps": "[]*blkiodev.ThrottleDevice",
    "Resources.BlkioDeviceReadIOps": "[]*blkiodev.ThrottleDevice",
    "Resources.BlkioDeviceWriteIOps": "[]*blkiodev.ThrottleDevice",
    "Resources.Ulimits": "[]*units.Ulimit",
    "NetworkingConfig.EndpointsConfig": "map[string]*network.EndpointSettings",
    # The spec gives IPAM.Config's items as string maps; Go's IPAMConfig is a struct with a
    # map inside (AuxiliaryAddresses), which a string map would refuse.
    "IPAM.Config": "[]network.IPAMConfig",
}

# Fields the spec lists that Go's struct lacks: Init is HostConfig's, not Resources', so an
# update ignores it.
NOT_FIELDS = {"container.UpdateConfig": {"Init"}}

# Structs the spec describes wrongly, declared here as Go declares them.
EXTRA_STRUCTS = {
    "network.IPAMConfig": {"Subnet": "string", "IPRange": "string", "Gateway": "string",
                           "AuxiliaryAddresses": "map[string]string"},
}

# Named types that are not structs, by their declaration.
NAMED = {
    "container.NetworkMode": "string", "container.IpcMode": "string", "container.PidMode": "string",
    "container.UTSMode": "string", "container.UsernsMode": "string",
    "container.CgroupnsMode": "string", "container.CgroupSpec": "string",
    "container.Isolation": "string", "mount.Type": "string", "mount.Consistency": "string",
    "mount.Propagation": "string", "nat.PortMap": "map[string][]nat.PortBinding",
    "fs.FileMode": "uint32", "strslice.StrSlice": "[]string", "time.Duration": "int64",
    "nat.PortSet": "map[string]struct {}",
}

# "METHOD /path" -> {parameter: type} where the spec's query type is not dockerd's.
QUERY_TYPES = {
    # since/until are timestamps with a fraction ("1795843383.000000000"), not integers.
    "GET /containers/{id}/logs": {"since": None, "until": None},
}

SCALARS = {"string": "string", "boolean": "bool", "number": "float64"}


def base_type(go_type):
    """What a list, map or pointer type holds in the end: []*units.Ulimit -> units.Ulimit."""
    while True:
        stripped = re.sub(r"^(\[[0-9]*\]|map\[string\]|\*)", "", go_type)
        if stripped == go_type:
            return go_type
        go_type = stripped


class Generator(object):
    def __init__(self, spec):
        self.spec = spec
        self.structs = dict(EXTRA_STRUCTS)

    def go_name(self, key):
        return GO_NAMES.get(key, "types." + key.split(".")[-1])

    def definition(self, ref):
        return ref.rsplit("/", 1)[1]

    def properties(self, schema, where):
        """A schema's fields, allOf parts and $refs merged (Go's embedded structs), each with
        where it is declared ("Resources.Memory") for GO_NAMES and GO_TYPES."""
        if "$ref" in schema:
            name = self.definition(schema["$ref"])
            return self.properties(self.spec["definitions"][name], name)
        fields = {name: (field, "%s.%s" % (where, name))
                  for name, field in (schema.get("properties") or {}).items()}
        for part in schema.get("allOf", ()):
            fields.update(self.properties(part, where))
        return fields

    def struct(self, go_type, schema, where):
        """Record a struct type's fields; `where` names it in the spec ("Mount.BindOptions")."""
        if go_type in self.structs:
            return go_type
        self.structs[go_type] = fields = {}
        for name, (field, declared) in sorted(self.properties(schema, where).items()):
            if name in NOT_FIELDS.get(go_type, ()):
                continue
            spec_type = self.type_of(field, declared)  # records the structs it names
            fields[name] = GO_TYPES.get(declared, spec_type)
        return go_type

    def type_of(self, schema, where):
        """The Go type of one schema; structs met on the way are recorded."""
        if "$ref" in schema:
            name = self.definition(schema["$ref"])
            target = self.spec["definitions"][name]
            if name == "PortMap":
                self.type_of(target["additionalProperties"], "PortMap")
                return "nat.PortMap"
            if target.get("type") == "object" or "allOf" in target or "properties" in target:
                return self.struct(self.go_name(name), target, name)
            return self.type_of(target, name)
        kind = schema.get("type")
        if "allOf" in schema:
            return self.struct(self.go_name(where), schema, where)
        if kind == "integer":
            return {"int64": "int64", "uint64": "uint64"}.get(schema.get("format"), "int")
        if kind == "array":
            return "[]" + self.type_of(schema.get("items") or {}, where)
        if kind == "object" and schema.get("properties"):
            return self.struct(self.go_name(where), schema, where)
        if kind == "object":
            values = schema.get("additionalProperties")
            if not isinstance(values, dict):
                return "map[string]interface {}"
            if values.get("type") == "object" and not values.get("properties"):
                return "map[string]struct {}"  # a set: ExposedPorts, Volumes
            return "map[string]" + self.type_of(values, where)
        return SCALARS.get(kind, "interface {}")

    def body_struct(self, go_type, schema):
        if go_type == "runconfig.ContainerConfigWrapper":  # the commit body too
            schema = self.path_body("/containers/create", "post")
        self.struct(go_type, schema, go_type.split(".")[-1])

    def path_body(self, path, method):
        parameters = self.spec["paths"][path][method].get("parameters", [])
        return next(p["schema"] for p in parameters if p["in"] == "body")

    def query(self, operation, parameters):
        checked = {}
        overrides = QUERY_TYPES.get(operation, {})
        for parameter in parameters:
            if parameter["in"] != "query":
                continue
            name = parameter["name"]
            if name in overrides:
                kind = overrides[name]
            elif parameter.get("enum"):
                kind = list(parameter["enum"])
            elif parameter.get("type") == "integer":
                kind = "int64" if parameter.get("format") == "int64" else "int"
            else:
                kind = None  # strings; bools are httputils.BoolValue, which takes any text
            if kind:
                checked[name] = kind
        return checked

    def run(self):
        queries = {}
        for path, methods in sorted(self.spec["paths"].items()):
            if path.startswith(UNSERVED):
                continue
            for method, operation in sorted(methods.items()):
                key = "%s %s" % (method.upper(), path)
                if key in BODIES:
                    self.body_struct(BODIES[key], self.path_body(path, method))
                checked = self.query(key, operation.get("parameters", []))
                if checked:
                    queries[key] = checked
        self.prune()
        self.check_closed()
        return queries

    def prune(self):
        """Keep the structs a body reaches: an override can leave one the spec named unused."""
        reached, todo = set(), list(BODIES.values())
        while todo:
            go_type = base_type(todo.pop())
            if go_type in self.structs and go_type not in reached:
                reached.add(go_type)
                todo.extend(self.structs[go_type].values())
            elif go_type in NAMED:
                todo.append(NAMED[go_type])
        self.structs = {name: fields for name, fields in self.structs.items() if name in reached}

    def check_closed(self):
        """Every type the tables name must be one jsontypes knows: a struct, a named type, a
        list or map of one, or a Go scalar."""
        scalars = {"string", "bool", "int", "int64", "uint", "uint16", "uint32", "uint64",
                   "float64", "struct {}", "interface {}"}
        types = list(BODIES.values()) + list(NAMED.values())
        types += [kind for fields in self.structs.values() for kind in fields.values()]
        for go_type in map(base_type, types):
            if go_type not in scalars and go_type not in NAMED and go_type not in self.structs:
                raise SystemExit("gen_apitypes: %s is named but not declared" % go_type)


def render(spec):
    generator = Generator(spec)
    queries = generator.run()
    tables = (("BODIES", BODIES), ("QUERIES", queries), ("NAMED", NAMED),
              ("STRUCTS", generator.structs))
    header = ('"""The Engine API\'s request types (v%s), generated by tests/gen_apitypes.py from\n'
              "tests/fixtures/engine-api-v1.41.yaml: do not edit, run `make apitypes`.\n\n"
              "drivers/jsontypes.py checks request bodies and query parameters against these tables;\n"
              "tests/gen_apitypes.py says what each holds and where the spec is wrong about dockerd.\n"
              '"""\n' % spec["info"]["version"])
    # JSON of strings, lists and dicts is a Python literal too, and sorts and indents stably.
    return header + "".join("\n%s = %s\n" % (name, json.dumps(table, indent=4, sort_keys=True))
                            for name, table in tables)


def main(argv):
    output = argv[1] if len(argv) > 1 else OUTPUT
    with open(SPEC) as spec_file:
        text = render(yaml.safe_load(spec_file))
    with open(output, "w") as out:
        out.write(text)


if __name__ == "__main__":
    main(sys.argv)
