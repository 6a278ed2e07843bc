"""The Dockerfile language: parsed the way dockerd 20.10's legacy builder parses it.

Docker 1.8.2 kept the parser in builder/parser; today's dockerd vendors BuildKit's
frontend/dockerfile packages (parser, instructions, shell) and its legacy builder uses them
as they are. This module is those three packages, and nothing here touches a file, an image
or a container: the builder (drivers/builder.py) runs what this module describes.

1. Lines (parser.Parse)
   A Dockerfile is read line by line. Leading whitespace goes; a line that then starts with
   `#` is a comment. Before the first instruction, comment lines of the form `# key=value`
   are parser directives: `escape` (`\\` or a backtick, the character that escapes and
   continues lines) and `syntax` (the frontend BuildKit would fetch; the legacy builder only
   notes it). Each may appear once; the first line that is not a directive ends them.
   A line whose last non-blank character is the escape character continues on the next one
   (the escape goes, the next line is appended as it is); comment lines and blank lines
   inside a continuation are skipped. Empty lines between instructions are ignored.

2. Instructions (splitCommand and the line parsers)
   The first word names the instruction (case does not matter). Words right after it that
   start with `--` are flags (`COPY --from=build`). The rest is parsed per instruction:
     RUN, CMD, ENTRYPOINT, SHELL   a JSON array of strings (exec form), else the text as it
                                   is (shell form: run by the SHELL, `/bin/sh -c` by default)
     COPY, ADD, VOLUME             a JSON array, else words split on blanks
     ENV, LABEL                    `key=value ...` (quotes kept for the expansion step), or
                                   the legacy `key value with spaces`
     ARG                           `name` or `name=default`, several per line
     FROM, EXPOSE                  words split on blanks
     HEALTHCHECK                   NONE, or CMD followed by a command like RUN's
     ONBUILD                       another instruction, kept as text until it triggers
     MAINTAINER, USER, WORKDIR, STOPSIGNAL   the rest of the line
   An array that is valid JSON but holds anything but strings is an error; any other text
   after `[` that is not JSON is the shell form. BuildKit's heredocs (`RUN <<EOF`) need its
   own frontend: the legacy parser would read the document's lines as instructions, so they
   are refused here with a message that says so.

3. Typed commands and stages (instructions.Parse)
   Each line becomes a Command (or a Stage for FROM) with its flags checked. ARG lines before
   the first FROM are meta args, usable in FROM lines. Any other instruction before a FROM
   is an error, as is an instruction the builder does not know.

4. Words (shell.Lex)
   When an instruction runs, its words are expanded against the environment, like a shell
   without command substitution: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alternate}`,
   `${VAR:?message}`, single quotes (literal), double quotes (with `$` expansion and escapes
   of `"`, `$` and the escape character), and the escape character outside quotes.

Errors carry dockerd's wording; the builder adds "failed to parse Dockerfile: " or
"dockerfile parse error line N: " as dockerd does.
"""
import json
import re
import unicodedata

from drivers.errdefs import InvalidParameter

DEFAULT_ESCAPE = "\\"
DIRECTIVES = ("escape", "syntax")

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
# A heredoc opener as BuildKit's frontend reads one: `<<EOF`, `<<-EOF`, `<<"EOF"` (not `<<<`).
_HEREDOC = re.compile(r"(?:^|[^<])<<-?\s*([\"']?)[A-Za-z_][A-Za-z0-9_]*\1(?:\s|$)")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_UTF8_BOM = "\ufeff"


class DockerfileError(InvalidParameter):
    """A Dockerfile that cannot be parsed; `line` is where (1-based), when known."""

    def __init__(self, message, line=0):
        super().__init__(message)
        self.line = line


# ---------------------------------------------------------------------------------------------
# 1 and 2: lines and instructions
# ---------------------------------------------------------------------------------------------

class Node(object):
    """One instruction as written: `value` (lower case), its `flags`, its `args` (the words
    the line parser made), `json` (exec form), `original` (the joined line), its first and
    last `start_line`/`end_line`, and for ONBUILD the instruction it carries (`child`)."""

    def __init__(self, value, original, flags=(), args=(), json_form=False, child=None):
        self.value = value
        self.original = original
        self.flags = list(flags)
        self.args = list(args)
        self.json = json_form
        self.child = child
        self.start_line = self.end_line = 0


class ParseResult(object):
    """parser.Result: the instructions, the escape character, the `syntax` directive (if
    any) and the warnings to print (empty continuation lines)."""

    def __init__(self, nodes, escape, syntax, warnings):
        self.nodes = nodes
        self.escape = escape
        self.syntax = syntax
        self.warnings = warnings


class _Directives(object):
    """Parser directives: only at the very top, each at most once."""

    def __init__(self):
        self.escape = DEFAULT_ESCAPE
        self.continuation = _continuation_regex(DEFAULT_ESCAPE)
        self.values = {}
        self.done = False

    def consider(self, line):
        if self.done:
            return
        match = _DIRECTIVE.match(line)
        key = match.group(1).lower() if match else None
        if key not in DIRECTIVES:
            self.done = True
            return
        if key in self.values:
            raise DockerfileError("only one %s parser directive can be used" % key)
        self.values[key] = match.group(2)
        if key == "escape":
            if match.group(2) not in ("`", "\\"):
                raise DockerfileError("invalid escape token '%s' does not match ` or \\"
                                      % match.group(2))
            self.escape = match.group(2)
            self.continuation = _continuation_regex(self.escape)


def _continuation_regex(escape):
    """The escape character as the last non-blank character, unless it is itself escaped."""
    char = re.escape(escape)
    return re.compile(r"([^%s])%s[ \t]*$|^%s[ \t]*$" % (char, char, char))


def parse(text):
    """parser.Parse: the Dockerfile `text` as a ParseResult; DockerfileError on bad input."""
    directives = _Directives()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if lines and lines[0].startswith(_UTF8_BOM):
        lines[0] = lines[0][len(_UTF8_BOM):]
    nodes, warnings = [], []
    index = 0
    while index < len(lines):
        stripped = lines[index].lstrip()
        directives.consider(stripped)
        index += 1
        start = index
        line, complete = _trim_continuation("" if stripped.startswith("#") else stripped, directives)
        if complete and not line:
            continue
        empty_continuation = False
        while not complete and index < len(lines):
            raw = lines[index]
            directives.consider(raw)
            index += 1
            if raw.lstrip().startswith("#"):
                continue
            if not raw.strip():
                empty_continuation = True
                continue
            more, complete = _trim_continuation(raw, directives)
            line += more
        if empty_continuation:
            warnings.append("[WARNING]: Empty continuation line found in:\n    " + line)
        try:
            node = node_from_line(line, directives.escape)
        except DockerfileError as err:
            err.line = start
            raise
        node.start_line, node.end_line = start, index
        nodes.append(node)
    if warnings:
        warnings.append("[WARNING]: Empty continuation lines will become errors in a future release.")
    if not nodes:
        raise DockerfileError("file with no instructions", index)
    return ParseResult(nodes, directives.escape, directives.values.get("syntax"), warnings)


def _trim_continuation(line, directives):
    match = directives.continuation.search(line)
    if match:
        return line[:match.start()] + (match.group(1) or ""), False
    return line, True


def node_from_line(line, escape=DEFAULT_ESCAPE):
    """newNodeFromLine: split off the instruction and its flags, parse the rest."""
    parts = _WHITESPACE.split(line.strip(), 1)
    value = parts[0].lower()
    rest, flags = extract_flags(parts[1]) if len(parts) == 2 else ("", [])
    rest = rest.strip()
    if value in ("run", "copy", "add") and _HEREDOC.search(rest):
        raise DockerfileError("heredocs (%s) need BuildKit's Dockerfile frontend; the legacy "
                              "builder cannot run them" % _HEREDOC.search(rest).group(0).strip())
    if value == "onbuild":
        child = node_from_line(rest, escape) if rest else None
        args = [child.value] + child.args if child else []
        return Node(value, line, flags, args, child=child)
    args, json_form = _LINE_PARSERS.get(value, _line_ignore)(rest, escape, value)
    return Node(value, line, flags, args, json_form)


def extract_flags(text):
    """extractBuilderFlags: the leading `--name=value` words (quotes and `\\` honoured);
    returns (the rest of the line, [flags]). A lone `--` ends the flags."""
    words, index = [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if not text.startswith("--", index):
            return text[index:], words
        word, index = _flag_word(text, index)
        if word == "--":
            return text[index:], words
        words.append(word)


def _flag_word(text, index):
    word, quote = [], None
    while index < len(text):
        char = text[index]
        index += 1
        if quote is None and char.isspace():
            break
        if char == quote:
            quote = None
            continue
        if quote is None and char in "'\"":
            quote = char
            continue
        if char == "\\":
            if index == len(text):
                continue  # a backslash at the very end is dropped
            char = text[index]
            index += 1
        word.append(char)
    return "".join(word), index


def parse_words(text, escape):
    """parseWords: blank-separated words; quotes and escapes are kept for the expansion step,
    they only decide where a word ends."""
    words, word, quote, index = [], [], None, 0
    blank_ok = False
    while index < len(text):
        char = text[index]
        if quote is None and char.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok = [], False
            index += 1
            continue
        if quote is None and char in "'\"":
            quote, blank_ok = char, True
        elif char == quote:
            quote = None
        if char == escape and quote != "'":
            if index + 1 == len(text):
                break  # an escape at the very end is dropped
            word.append(char)
            index += 1
            char = text[index]
        word.append(char)
        index += 1
    if blank_ok or word:
        words.append("".join(word))
    return words


def _reject_constant(name):
    raise ValueError(name)


def parse_json_array(text):
    """parseJSON: the leading JSON array of strings in `text`, or None when `text` is not a
    JSON array at all (then it is the shell form). An array of anything else is an error."""
    text = text.lstrip()
    if not text.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise DockerfileError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _line_ignore(rest, escape, instruction):
    return [], False


def _line_maybe_json(rest, escape, instruction):
    if not rest:
        return [], False
    array = parse_json_array(rest)
    return (array, True) if array is not None else ([rest], False)


def _line_maybe_json_to_list(rest, escape, instruction):
    array = parse_json_array(rest)
    if array is not None:
        return array, True
    return _line_whitespace_delimited(rest, escape, instruction)


def _line_whitespace_delimited(rest, escape, instruction):
    return (_WHITESPACE.split(rest) if rest else []), False


def _line_string(rest, escape, instruction):
    return ([rest] if rest else []), False


def _line_name_val(rest, escape, instruction):
    """ENV and LABEL: `k=v k2="v 2"` as [k, v, k2, v2], or the legacy `k value ...`."""
    words = parse_words(rest, escape)
    if not words:
        return [], False
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, 1)
        if len(parts) < 2:
            raise DockerfileError("%s must have two arguments" % instruction.upper())
        return parts, False
    pairs = []
    for word in words:
        if "=" not in word:
            raise DockerfileError("Syntax error - can't find = in %s. Must be of the form: "
                                  "name=value" % go_quote(word))
        pairs.extend(word.split("=", 1))
    return pairs, False


def _line_name_or_name_val(rest, escape, instruction):
    return parse_words(rest, escape), False


def _line_healthcheck(rest, escape, instruction):
    """HEALTHCHECK: the type word (NONE or CMD), then a command like RUN's."""
    parts = re.split(r"\s+", rest, 1)
    if not parts[0]:
        return [], False
    command, json_form = _line_maybe_json(parts[1] if len(parts) > 1 else "", escape, instruction)
    return [parts[0]] + command, json_form


_LINE_PARSERS = {
    "add": _line_maybe_json_to_list, "arg": _line_name_or_name_val, "cmd": _line_maybe_json,
    "copy": _line_maybe_json_to_list, "entrypoint": _line_maybe_json, "env": _line_name_val,
    "expose": _line_whitespace_delimited, "from": _line_whitespace_delimited,
    "healthcheck": _line_healthcheck, "label": _line_name_val, "maintainer": _line_string,
    "run": _line_maybe_json, "shell": _line_maybe_json, "stopsignal": _line_string,
    "user": _line_string, "volume": _line_maybe_json_to_list, "workdir": _line_string,
}


def go_quote(text):
    """strconv.Quote / %q of a string: double quotes, Go's escapes."""
    return json.dumps(text, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# 3: typed commands and stages
# ---------------------------------------------------------------------------------------------

class Command(object):
    """One typed instruction. `name` is the instruction ("run"), `code` the line as written
    (what "Step N/M : ..." shows), `line` where it starts; the other attributes are the
    instruction's own, as instructions.Parse makes them:

      env, label          pairs [(key, value)]; label: no_expand (from `--label`)
      arg                 args [(name, default or None)]
      run, cmd,           command [words] or None, prepend_shell (the shell form); run:
      entrypoint            flags_used (RUN --mount and friends need BuildKit)
      shell               shell [words]
      copy, add           sources [..], dest, chown, chmod; copy: from_stage
      workdir, user,      path, user, signal, maintainer
      stopsignal, maintainer
      expose, volume      ports, volumes
      healthcheck         health {"Test": [...], "Interval": ns, ...}
      onbuild             expression (the trigger's text)
    """

    def __init__(self, name, code, line, **fields):
        self.name = name
        self.code = code
        self.line = line
        self.__dict__.update(fields)

    def __str__(self):
        return self.code

    def copy(self, **changes):
        """A copy with some fields replaced (expansion never edits the parsed command)."""
        fields = {key: value for key, value in self.__dict__.items() if key not in ("name", "code", "line")}
        fields.update(changes)
        return Command(self.name, self.code, self.line, **fields)


class Stage(object):
    """A FROM line and the commands after it: `base` (the image or stage it starts from, not
    yet expanded), `name` (AS, lower case, or ""), `platform` (--platform), `code`, `line`."""

    def __init__(self, base, name, platform, code, line):
        self.base = base
        self.name = name
        self.platform = platform
        self.code = code
        self.line = line
        self.commands = []

    def __str__(self):
        return self.code


class _Flags(object):
    """BFlags: the flags an instruction accepts, checked like the builder's flag parser.
    `spec` maps each name to "string" or "strings"; parse() returns {name: value}."""

    def __init__(self, words, spec):
        self.words = words
        self.spec = spec

    def parse(self):
        values, used = {}, []
        for word in self.words:
            if not word.startswith("--"):
                raise DockerfileError("Arg should start with -- : %s" % word)
            name, sep, value = word[2:].partition("=")
            if name not in self.spec:
                raise DockerfileError("Unknown flag: %s" % name)
            if name in used and self.spec[name] != "strings":
                raise DockerfileError("Duplicate flag specified: %s" % name)
            if not sep:
                raise DockerfileError("Missing a value on flag: %s" % name)
            used.append(name)
            if self.spec[name] == "strings":
                values.setdefault(name, []).append(value)
            else:
                values[name] = value
        return values, used


def parse_stages(result):
    """instructions.Parse: the stages of a parsed Dockerfile and the ARGs before the first
    FROM (meta args). Returns (stages, meta_args)."""
    stages, meta_args = [], []
    for node in result.nodes:
        try:
            instruction = parse_instruction(node)
        except DockerfileError as err:
            raise DockerfileError("dockerfile parse error line %d: %s" % (node.start_line, err),
                                  node.start_line) from None
        if isinstance(instruction, Stage):
            stages.append(instruction)
        elif not stages and instruction.name == "arg":
            meta_args.append(instruction)
        elif not stages:
            raise DockerfileError("no build stage in current context", node.start_line)
        else:
            stages[-1].commands.append(instruction)
    return stages, meta_args


def parse_command(node):
    """ParseCommand: like parse_instruction, but a FROM is not a command here (ONBUILD
    triggers, commit changes)."""
    instruction = parse_instruction(node)
    if isinstance(instruction, Stage):
        raise DockerfileError("*instructions.Stage is not a command type", node.start_line)
    return instruction


def parse_instruction(node):
    """ParseInstruction: the typed Command (or Stage) for one node."""
    parser = _INSTRUCTION_PARSERS.get(node.value)
    if parser is None:
        raise DockerfileError("unknown instruction: %s" % node.value.upper(), node.start_line)
    return parser(node, node.original.strip())


def _flags(node, spec=None):
    """The instruction's flags checked against `spec` ({} when it takes none)."""
    return _Flags(node.flags, spec or {}).parse()


def _command(node, code, **fields):
    """A command of an instruction that takes no flags."""
    _flags(node)
    return Command(node.value, code, node.start_line, **fields)


def _at_least_one(node, name):
    if not node.args:
        raise DockerfileError("%s requires at least one argument" % name)


def _exactly_one(node, name):
    if len(node.args) != 1:
        raise DockerfileError("%s requires exactly one argument" % name)


def _pairs(node, name):
    _at_least_one(node, name)
    if len(node.args) % 2:
        raise DockerfileError("Bad input to %s, too many arguments" % name)
    pairs = list(zip(node.args[0::2], node.args[1::2]))
    if any(not key for key, _ in pairs):
        raise DockerfileError("%s names can not be blank" % name)
    return pairs


def _parse_from(node, code):
    args = node.args
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise DockerfileError("invalid name for build stage: %s, name can't start with a "
                                  "number or contain symbols" % go_quote(args[2]))
    elif len(args) != 1:
        raise DockerfileError("FROM requires either one or three arguments")
    values, _ = _flags(node, {"platform": "string"})
    return Stage(args[0], name, values.get("platform", ""), code, node.start_line)


def _parse_env(node, code):
    _flags(node)
    return Command(node.value, code, node.start_line, pairs=_pairs(node, "ENV"))


def _parse_label(node, code):
    _flags(node)
    return Command(node.value, code, node.start_line, pairs=_pairs(node, "LABEL"), no_expand=False)


def _parse_maintainer(node, code):
    _exactly_one(node, "MAINTAINER")
    return _command(node, code, maintainer=node.args[0])


def _copy_fields(node, name, spec):
    if len(node.args) < 2:
        raise DockerfileError("%s requires at least two arguments, but only one was provided. "
                              "Destination could not be determined" % name)
    values, _ = _flags(node, spec)
    return dict(sources=node.args[:-1], dest=node.args[-1], chown=values.get("chown", ""),
                chmod=values.get("chmod", ""), from_stage=values.get("from", ""))


def _parse_add(node, code):
    fields = _copy_fields(node, "ADD", {"chown": "string", "chmod": "string"})
    return Command(node.value, code, node.start_line, **fields)


def _parse_copy(node, code):
    fields = _copy_fields(node, "COPY", {"chown": "string", "chmod": "string", "from": "string"})
    return Command(node.value, code, node.start_line, **fields)


def _parse_onbuild(node, code):
    _at_least_one(node, "ONBUILD")
    _flags(node)
    trigger = node.args[0].strip().upper()
    if trigger == "ONBUILD":
        raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise DockerfileError("%s isn't allowed as an ONBUILD trigger" % trigger)
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original)
    return Command(node.value, code, node.start_line, expression=expression)


def _parse_workdir(node, code):
    _exactly_one(node, "WORKDIR")
    return _command(node, code, path=node.args[0])


def handle_json_args(node):
    """handleJSONArgs: the exec form as it is; the shell form joined into one string."""
    if not node.args:
        return []
    return list(node.args) if node.json else [" ".join(node.args)]


def _parse_run(node, code):
    # RUN --mount, --network and --security parse, but only BuildKit can honour them.
    _, used = _flags(node, {"mount": "strings", "network": "string", "security": "string"})
    return Command(node.value, code, node.start_line, command=handle_json_args(node),
                   prepend_shell=not node.json, flags_used=used)


def _parse_cmd(node, code):
    return _command(node, code, command=handle_json_args(node), prepend_shell=not node.json)


def _parse_entrypoint(node, code):
    return _command(node, code, command=handle_json_args(node) or None, prepend_shell=not node.json)


MINIMUM_DURATION = 1000000  # container.MinimumDuration: 1 ms, in nanoseconds
_HEALTH_DURATIONS = (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"))


def _parse_healthcheck(node, code):
    _at_least_one(node, "HEALTHCHECK")
    kind, args = node.args[0].upper(), node.args[1:]
    if kind == "NONE":
        if args:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return Command(node.value, code, node.start_line, health={"Test": ["NONE"]})
    values, _ = _flags(node, {"interval": "string", "timeout": "string", "start-period": "string",
                              "retries": "string"})
    if kind != "CMD":
        raise DockerfileError("Unknown type %s in HEALTHCHECK (try CMD)" % go_quote(kind))
    if not args:
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    health = {"Test": ["CMD" if node.json else "CMD-SHELL"] + args}
    for flag, key in _HEALTH_DURATIONS:
        if values.get(flag):
            health[key] = _interval(flag, values[flag])
    if values.get("retries"):
        health["Retries"] = _retries(values["retries"])
    return Command(node.value, code, node.start_line, health=health)


def _interval(flag, text):
    duration = parse_duration(text)
    if duration < MINIMUM_DURATION:
        raise DockerfileError("Interval %s cannot be less than 1ms" % go_quote(flag))
    return duration


def _retries(text):
    try:
        retries = int(text)
    except ValueError:
        raise DockerfileError("strconv.ParseInt: parsing %s: invalid syntax" % go_quote(text)) from None
    if retries < 1:
        raise DockerfileError("--retries must be at least 1 (not %d)" % retries)
    return retries


def _parse_expose(node, code):
    _at_least_one(node, "EXPOSE")
    return _command(node, code, ports=sorted(node.args))


def _parse_user(node, code):
    _exactly_one(node, "USER")
    return _command(node, code, user=node.args[0])


def _parse_volume(node, code):
    _at_least_one(node, "VOLUME")
    volumes = [volume.strip() for volume in node.args]
    if any(not volume for volume in volumes):
        raise DockerfileError("VOLUME specified can not be an empty string")
    return _command(node, code, volumes=volumes)


def _parse_stopsignal(node, code):
    _exactly_one(node, "STOPSIGNAL")
    return Command(node.value, code, node.start_line, signal=node.args[0])


def _parse_arg(node, code):
    _at_least_one(node, "ARG")
    args = []
    for word in node.args:
        name, sep, default = word.partition("=")
        if sep and not name:
            raise DockerfileError("ARG names can not be blank")
        args.append((name, default if sep else None))
    return Command(node.value, code, node.start_line, args=args)


def _parse_shell(node, code):
    _flags(node)
    shell = handle_json_args(node)
    if not shell:
        raise DockerfileError("SHELL requires at least one argument")
    if not node.json:
        raise DockerfileError("SHELL requires the arguments to be in JSON form")
    return Command(node.value, code, node.start_line, shell=shell)


_INSTRUCTION_PARSERS = {
    "add": _parse_add, "arg": _parse_arg, "cmd": _parse_cmd, "copy": _parse_copy,
    "entrypoint": _parse_entrypoint, "env": _parse_env, "expose": _parse_expose,
    "from": _parse_from, "healthcheck": _parse_healthcheck, "label": _parse_label,
    "maintainer": _parse_maintainer, "onbuild": _parse_onbuild, "run": _parse_run,
    "shell": _parse_shell, "stopsignal": _parse_stopsignal, "user": _parse_user,
    "volume": _parse_volume, "workdir": _parse_workdir,
}


# ---------------------------------------------------------------------------------------------
# Go durations (HEALTHCHECK flags, and how `docker history` prints them back)
# ---------------------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 1000, "µs": 1000, "μs": 1000, "ms": 10 ** 6, "s": 10 ** 9,
                   "m": 60 * 10 ** 9, "h": 3600 * 10 ** 9}


def parse_duration(text):
    """time.ParseDuration: "1m30s", "1.5h", "300ms" -> nanoseconds."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0
    parts = _DURATION_PART.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body or \
            any(number in ("", ".") for number, _ in parts):
        raise DockerfileError("time: invalid duration %s" % go_quote(text))
    total = sum(int(round(float(number) * _DURATION_UNITS[unit])) for number, unit in parts)
    return -total if text.startswith("-") else total


def format_duration(nanos):
    """Duration.String: "1h0m0s", "1m30s", "1.5s", "300ms", "0s"."""
    if nanos == 0:
        return "0s"
    sign, nanos = ("-", -nanos) if nanos < 0 else ("", nanos)
    if nanos < 10 ** 9:
        for unit, size in (("ms", 10 ** 6), ("µs", 10 ** 3), ("ns", 1)):
            if nanos >= size:
                return sign + _decimal(nanos, size) + unit
    hours, rest = divmod(nanos, 3600 * 10 ** 9)
    minutes, rest = divmod(rest, 60 * 10 ** 9)
    text = _decimal(rest, 10 ** 9) + "s"
    if hours or minutes:
        text = "%dm" % minutes + text
    if hours:
        text = "%dh" % hours + text
    return sign + text


def _decimal(value, unit):
    whole, fraction = divmod(value, unit)
    digits = ("%0*d" % (len(str(unit)) - 1, fraction)).rstrip("0") if unit > 1 else ""
    return "%d.%s" % (whole, digits) if digits else "%d" % whole


# ---------------------------------------------------------------------------------------------
# 4: words, expanded like a shell (shell.Lex)
# ---------------------------------------------------------------------------------------------

SPECIAL_PARAMETERS = "@*#?-$!0"


def env_map(env):
    """BuildEnvs: ["K=v", ...] as a dict; a later entry wins, a bare "K" is empty."""
    mapping = {}
    for entry in env:
        key, _, value = entry.partition("=")
        mapping[key] = value
    return mapping


class ShellLex(object):
    """shell.Lex: expand variables and quotes in Dockerfile words."""

    def __init__(self, escape=DEFAULT_ESCAPE):
        self.escape = escape

    def process_word(self, word, env):
        """One word: quotes and escapes removed, variables substituted (`env`: "K=v" list)."""
        return self._process(word, env)[0]

    def process_words(self, word, env):
        """The word split on blanks after substitution (EXPOSE $PORTS), quotes respected."""
        return self._process(word, env)[1]

    def _process(self, word, env):
        try:
            return _ShellWord(word, env_map(env), self.escape).process_stop_on(None)
        except DockerfileError as err:
            raise DockerfileError("failed to process %s: %s" % (go_quote(word), err)) from None


class _Words(object):
    """The word list built while a word is processed (wordsStruct)."""

    def __init__(self):
        self.words, self.word, self.in_word = [], "", False

    def add_char(self, char):
        if char.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word, self.in_word = "", False
        else:
            self.add_raw(char)

    def add_raw(self, text):
        self.word += text
        self.in_word = True

    def add_string(self, text):
        for char in text:
            self.add_char(char)

    def result(self):
        if self.word:
            self.words.append(self.word)
            self.word, self.in_word = "", False
        return self.words


class _ShellWord(object):
    def __init__(self, text, env, escape):
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape

    def peek(self):
        return self.text[self.pos] if self.pos < len(self.text) else None

    def next(self):
        char = self.peek()
        if char is not None:
            self.pos += 1
        return char

    def process_stop_on(self, stop):
        result, words = [], _Words()
        special = {"'": self.single_quoted, '"': self.double_quoted, "$": self.dollar}
        while self.peek() is not None:
            char = self.peek()
            if stop is not None and char == stop:
                self.next()
                return "".join(result), words.result()
            if char in special:
                text = special[char]()
                result.append(text)
                if char == "$":
                    words.add_string(text)
                else:
                    words.add_raw(text)
                continue
            char = self.next()
            if char == self.escape:
                char = self.next()
                if char is None:
                    break
                words.add_raw(char)
            else:
                words.add_char(char)
            result.append(char)
        if stop is not None:
            raise DockerfileError("unexpected end of statement while looking for matching %s" % stop)
        return "".join(result), words.result()

    def single_quoted(self):
        self.next()
        text = []
        while True:
            char = self.next()
            if char is None:
                raise DockerfileError("unexpected end of statement while looking for matching single-quote")
            if char == "'":
                return "".join(text)
            text.append(char)

    def double_quoted(self):
        self.next()
        text = []
        while True:
            char = self.peek()
            if char is None:
                raise DockerfileError("unexpected end of statement while looking for matching double-quote")
            if char == '"':
                self.next()
                return "".join(text)
            if char == "$":
                text.append(self.dollar())
                continue
            char = self.next()
            if char == self.escape:
                following = self.peek()
                if following is None:
                    continue
                if following in ('"', "$", self.escape):
                    char = self.next()
            text.append(char)

    def dollar(self):
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.next()
        if self.peek() is None:
            raise DockerfileError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise DockerfileError("syntax error: bad substitution")
        name = self.name()
        char = self.next()
        if char == "}":
            return self.env.get(name, "")
        if char == "?":
            word = self.until_brace()
            if name not in self.env:
                raise DockerfileError("%s: %s" % (name, word or "is not allowed to be unset"))
            return self.env[name]
        if char == ":":
            return self.modified(name, self.next(), self.until_brace())
        raise DockerfileError("missing ':' in substitution")

    def until_brace(self):
        try:
            return self.process_stop_on("}")[0]
        except DockerfileError:
            if self.peek() is None:
                raise DockerfileError("syntax error: missing '}'") from None
            raise

    def modified(self, name, modifier, word):
        """${name:+word}, ${name:-word}, ${name:?word}."""
        value = self.env.get(name, "")
        if modifier == "+":
            return word if value else ""
        if modifier == "-":
            return value or word
        if modifier == "?":
            if name not in self.env:
                raise DockerfileError("%s: %s" % (name, word or "is not allowed to be unset"))
            if not value:
                raise DockerfileError("%s: %s" % (name, word or "is not allowed to be empty"))
            return value
        raise DockerfileError("unsupported modifier (%s) in substitution" % (modifier or ""))

    def name(self):
        """A variable name: letters, digits and _, or all digits, or one special parameter."""
        name = []
        while self.peek() is not None:
            char = self.peek()
            if not name and unicodedata.category(char) == "Nd":
                while self.peek() is not None and unicodedata.category(self.peek()) == "Nd":
                    name.append(self.next())
                return "".join(name)
            if not name and char in SPECIAL_PARAMETERS:
                return self.next()
            if not (char.isalpha() or unicodedata.category(char) == "Nd" or char == "_"):
                break
            name.append(self.next())
        return "".join(name)
