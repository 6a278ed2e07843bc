"""`make lint`: every Python file must parse as Python 3.9 and use only the standard library.

ast.parse(feature_version=(3, 9)) refuses syntax newer than 3.9 (match, `X | Y` in some places,
parenthesised context managers); the import check refuses any module outside the stdlib and
this project, because the daemon is copied onto bare hosts with nothing installed.
"""
import ast
import os
import sys

PROJECT_MODULES = {"pydockerd", "drivers", "conftest"}
# yaml regenerates drivers/apitypes.py; schemathesis (with hypothesis and requests, which it
# drives) fuzzes the API from the spec.
TEST_ONLY_MODULES = {"pytest", "msgpack", "yaml", "schemathesis", "hypothesis", "requests"}


def python_files(paths):
    for path in paths:
        if os.path.isdir(path):
            for directory, _, names in os.walk(path):
                for name in sorted(names):
                    if name.endswith(".py"):
                        yield os.path.join(directory, name)
        else:
            yield path


def imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def check(path):
    with open(path) as source:
        text = source.read()
    try:
        tree = ast.parse(text, filename=path, feature_version=(3, 9))
    except SyntaxError as err:
        return ["%s:%s: not Python 3.9 syntax: %s" % (path, err.lineno, err.msg)]
    if not hasattr(sys, "stdlib_module_names"):  # Python < 3.10 cannot list its stdlib
        return []
    allowed = set(sys.stdlib_module_names) | PROJECT_MODULES
    if path.startswith("tests") or "/tests/" in path:
        allowed |= TEST_ONLY_MODULES | {os.path.splitext(name)[0] for name in os.listdir(os.path.dirname(path))}
    return ["%s:%d: imports %s, which is not in the standard library" % (path, line, module)
            for line, module in imported_modules(tree) if module not in allowed]


def main(paths):
    problems = [problem for path in python_files(paths) for problem in check(path)]
    for problem in problems:
        print(problem)
    print("lint: %d files checked, %d problems" % (len(list(python_files(paths))), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
