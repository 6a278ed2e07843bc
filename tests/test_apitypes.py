"""drivers/apitypes.py is what tests/gen_apitypes.py makes of the spec; drivers/jsontypes.py
decodes as Go's encoding/json does (the messages are those of dockerd 20.10.24)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from drivers import apitypes, errdefs, jsontypes

HERE = os.path.dirname(os.path.abspath(__file__))


def test_the_checked_in_table_is_what_the_generator_makes_of_the_spec(tmp_path):
    if importlib.util.find_spec("yaml") is None:
        pytest.skip("PyYAML is not installed (.ci/run installs it)")
    output = tmp_path / "apitypes.py"
    subprocess.run([sys.executable, os.path.join(HERE, "gen_apitypes.py"), str(output)], check=True)
    with open(os.path.join(HERE, os.pardir, "drivers", "apitypes.py"), "rb") as checked_in:
        assert output.read_bytes() == checked_in.read(), "run `make apitypes` and commit"


def test_the_spec_exceptions_are_in_the_table():
    wrapper = apitypes.STRUCTS["runconfig.ContainerConfigWrapper"]
    host_config = apitypes.STRUCTS["container.HostConfig"]
    assert wrapper["Cmd"] == "strslice.StrSlice" and host_config["CapDrop"] == "strslice.StrSlice"
    assert host_config["BlkioWeight"] == "uint16" and host_config["Memory"] == "int64"
    assert apitypes.STRUCTS["network.IPAM"]["Config"] == "[]network.IPAMConfig"
    assert "since" not in apitypes.QUERIES.get("GET /containers/{id}/logs", {})
    assert apitypes.QUERIES["POST /containers/{id}/restart"] == {"t": "int"}


@pytest.mark.parametrize("method, path, key", [
    ("POST", "/containers/create", "POST /containers/create"),
    ("POST", "/containers/abc/restart", "POST /containers/{id}/restart"),
    ("POST", "/networks/n1/connect", "POST /networks/{id}/connect"),
    ("GET", "/containers/abc/json", None),
    ("POST", "/containers/a/b/restart", None),
])
def test_requests_map_to_the_specs_operations(method, path, key):
    assert jsontypes.operation(method, path) == key


def decoded(text):
    return json.loads(text, parse_float=jsontypes.Number)


def refusal(key, document):
    with pytest.raises(errdefs.InvalidParameter) as error:
        jsontypes.check_body(key, document)
    return str(error.value)


@pytest.mark.parametrize("body, message", [
    ('{"Name": 5}', "cannot unmarshal number into Go struct field NetworkCreateRequest.Name "
     "of type string"),
    ('{"Name": "n", "Internal": "false"}', "cannot unmarshal string into Go struct field "
     "NetworkCreateRequest.Internal of type bool"),
    ('{"Name": "n", "IPAM": {"Config": [{"Subnet": ["10.0.0.0/8"]}]}}', "cannot unmarshal array "
     "into Go struct field IPAMConfig.IPAM.Config.Subnet of type string"),
    ('{"Name": "n", "Labels": {"a": 1}}', "cannot unmarshal number into Go struct field "
     "NetworkCreateRequest.Labels of type string"),
    ('{"Name": "n", "Labels": []}', "cannot unmarshal array into Go struct field "
     "NetworkCreateRequest.Labels of type map[string]string"),
])
def test_network_create_bodies_are_typed_like_dockerds_structs(body, message):
    assert refusal("POST /networks/create", decoded(body)) == "json: " + message


def test_ipam_config_takes_auxiliary_addresses_though_the_spec_says_string_map():
    body = decoded('{"Name": "n", "IPAM": {"Config": [{"Subnet": "10.9.0.0/16", '
                   '"AuxiliaryAddresses": {"a": "10.9.0.5"}}]}}')
    assert jsontypes.check_body("POST /networks/create", body) == body


@pytest.mark.parametrize("body, message", [
    ('{"HostConfig": {"Memory": 1e30}}', "number 1e30 into Go struct field "
     "HostConfig.HostConfig.Memory of type int64"),
    ('{"HostConfig": {"Memory": 9223372036854775808}}', "number 9223372036854775808 into Go "
     "struct field HostConfig.HostConfig.Memory of type int64"),
    ('{"HostConfig": {"Memory": 5.0}}', "number 5.0 into Go struct field "
     "HostConfig.HostConfig.Memory of type int64"),
    ('{"HostConfig": {"ConsoleSize": [-1, 2]}}', "number -1 into Go struct field "
     "HostConfig.HostConfig.ConsoleSize of type uint"),
    ('{"HostConfig": {"Mounts": [{"TmpfsOptions": {"Mode": -1}}]}}', "number -1 into Go struct "
     "field TmpfsOptions.HostConfig.Mounts.TmpfsOptions.Mode of type fs.FileMode"),
    ('{"HostConfig": {"RestartPolicy": "x"}}', "string into Go struct field "
     "HostConfig.HostConfig.RestartPolicy of type container.RestartPolicy"),
    ('{"Volumes": {"/x": 5}}', "number into Go struct field ContainerConfigWrapper.Volumes "
     "of type struct {}"),
    ('{"NetworkingConfig": {"EndpointsConfig": {"n": {"Aliases": "x"}}}}', "string into Go "
     "struct field EndpointSettings.NetworkingConfig.EndpointsConfig.Aliases of type []string"),
    ('{"HostConfig": {"NetworkMode": true}}', "bool into Go struct field "
     "HostConfig.HostConfig.NetworkMode of type container.NetworkMode"),
    ('{"HostConfig": {"Ulimits": "x"}}', "string into Go struct field "
     "HostConfig.HostConfig.Ulimits of type []*units.Ulimit"),
    ('{"HostConfig": {"Ulimits": [{"Soft": "x"}]}}', "string into Go struct field "
     "Ulimit.HostConfig.Ulimits.Soft of type int64"),
    ('{"HostConfig": {"ConsoleSize": "x"}}', "string into Go struct field "
     "HostConfig.HostConfig.ConsoleSize of type [2]uint"),
    ('{"HostConfig": {"IOMaximumIOps": -1}}', "number -1 into Go struct field "
     "HostConfig.HostConfig.IOMaximumIOps of type uint64"),
    ('{"Healthcheck": {"Interval": 1.5}}', "number 1.5 into Go struct field "
     "HealthConfig.Healthcheck.Interval of type time.Duration"),
])
def test_numbers_and_shapes_are_refused_as_go_refuses_them(body, message):
    assert refusal("POST /containers/create", decoded(body)) == "json: cannot unmarshal " + message


def test_go_decoding_null_case_and_strslice():
    body = decoded('{"Env": null, "cmd": "echo", "HostConfig": {"capdrop": "ALL", "Binds": [null],'
                   ' "PortBindings": {"80/tcp": null}}, "Unknown": {"x": 1}}')
    assert jsontypes.check_body("POST /containers/create", body) == {
        "Env": None, "Cmd": ["echo"], "Unknown": {"x": 1},
        "HostConfig": {"CapDrop": ["ALL"], "Binds": [""], "PortBindings": {"80/tcp": None}}}


def test_an_update_ignores_init_which_go_keeps_in_host_config_only():
    assert jsontypes.check_body("POST /containers/{id}/update", {"Init": "x"}) == {"Init": "x"}


def test_nul_bytes_are_refused_outside_labels():
    assert refusal("POST /containers/{id}/exec", {"Cmd": ["a\x00"]}) == (
        "invalid argument: NUL byte in Go struct field ExecConfig.Cmd")
    assert refusal("POST /containers/create", {"Volumes": {"/a\x00": {}}}) == (
        "invalid argument: NUL byte in Go struct field ContainerConfigWrapper.Volumes")
    labelled = {"Labels": {"a": "b\x00c"}}
    assert jsontypes.check_body("POST /volumes/create", labelled) == labelled


def test_lone_surrogates_become_the_replacement_character():
    document = json.loads('{"\\udc00k": ["a\\ud800", "\\ud83d\\ude00"]}')
    assert jsontypes.go_strings(document) == {"\ufffdk": ["a\ufffd", "\U0001F600"]}


@pytest.mark.parametrize("key, query, message", [
    ("POST /containers/{id}/restart", {"t": ["-99999999999999999999"]},
     'strconv.Atoi: parsing "-99999999999999999999": value out of range'),
    ("POST /containers/{id}/stop", {"t": ["\u0663"]}, 'strconv.Atoi: parsing "\u0663": invalid syntax'),
    ("POST /build/prune", {"keep-storage": ["1_0"]}, 'strconv.ParseInt: parsing "1_0": invalid syntax'),
    ("POST /containers/{id}/wait", {"condition": ["foo"]}, "invalid condition: foo"),
    ("GET /containers/{id}/archive", {"path": ["/a\x00"]},
     "invalid argument: NUL byte in query parameter path"),
])
def test_query_parameters_are_typed(key, query, message):
    with pytest.raises(errdefs.InvalidParameter) as error:
        jsontypes.check_query(key, query)
    assert str(error.value) == message


def test_good_query_parameters_pass():
    jsontypes.check_query("POST /containers/{id}/restart", {"t": ["-5"], "other": ["x"]})
    jsontypes.check_query("POST /containers/{id}/stop", {"t": [""]})  # empty: the default
