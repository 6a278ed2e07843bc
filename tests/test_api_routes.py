"""The route table and what API handlers may do (issue 9); none of this needs root.

A handler parses the request, calls one daemon operation and serialises the result: the rules
(state checks, locking, events, waiting) live in the operations, where every caller -- the
API, a restart policy, the boot -- gets them. These tests read pydockerd's own source.
"""
import ast
import inspect
import re
import textwrap

import pydockerd

# Functions a handler may call besides its one operation: they read the request or write
# the answer.
REQUEST_PARSERS = {"parse_signal", "parse_detach_keys", "import_reference", "pull_reference",
                   "open_import_url", "InvalidParameter", "NotFound", "ChunkedWriter"}
# Finding the object a path names is part of reading the request, as in dockerd's routers.
LOOKUPS = {"self.daemon.containers.get", "self.daemon.execs.get"}
# What only operations touch: container and exec state, locks, the event log.
DAEMON_STATE = {"cond", "lock", "running", "restarting", "removing", "removed", "monitor",
                "pending_attaches", "manually_stopped", "exit_code", "host_config", "log"}


def handler_names():
    return sorted({route.handler for route in pydockerd.ROUTES})


def handler_tree(name):
    source = textwrap.dedent(inspect.getsource(getattr(pydockerd.APIHandler, name)))
    return ast.parse(source).body[0]


def operations_called(tree):
    """The daemon operations a handler calls: module functions (not request parsers) and
    methods of the daemon's stores (self.daemon.graph.tag(...))."""
    module_functions = {name for name, value in vars(pydockerd).items()
                        if inspect.isfunction(value) or inspect.isclass(value)}
    called = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in module_functions - REQUEST_PARSERS:
            called.append(func.id)
        elif isinstance(func, ast.Attribute) and ast.unparse(func).startswith("self.daemon.") \
                and ast.unparse(func) not in LOOKUPS:
            called.append(ast.unparse(func))
    return called


def test_every_route_resolves_to_a_handler_method():
    for route in pydockerd.ROUTES:
        handler = getattr(pydockerd.APIHandler, route.handler, None)
        assert callable(handler), "%s %s -> %s" % (route.method, route.pattern.pattern, route.handler)
        parameters = list(inspect.signature(handler).parameters)[1:]
        assert set(route.pattern.groupindex) <= set(parameters), route.handler


def test_every_handler_method_has_a_route():
    defined = {name for name in vars(pydockerd.APIHandler)
               if re.match(r"^(get|head|post|put|delete)_", name)}
    assert defined == set(handler_names())


def test_routes_find_their_handlers():
    def resolve(method, path):
        handler = pydockerd.APIHandler.__new__(pydockerd.APIHandler)
        handler.command, handler.path = method, path
        route, params = handler.route()
        return route.handler, params

    assert resolve("GET", "/v1.41/distribution/127.0.0.1:5000/x/y:1/json") == (
        "get_distribution_json", {"name": "127.0.0.1:5000/x/y:1"})
    assert resolve("POST", "/v1.24/exec/abc/start") == ("post_exec_start", {"exec_id": "abc"})
    assert resolve("DELETE", "/images/busybox:latest") == ("delete_image", {"name": "busybox:latest"})


def test_handlers_hold_no_daemon_rules():
    for name in handler_names():
        tree = handler_tree(name)
        touched = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        assert not touched & DAEMON_STATE, "%s touches %s" % (name, touched & DAEMON_STATE)
        assert len(operations_called(tree)) <= 1, "%s calls %s" % (name, operations_called(tree))
