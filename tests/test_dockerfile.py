"""The Dockerfile language and the builder's pure parts, without a daemon (no root needed).

drivers/dockerfile.py (lines, instructions, words) against what dockerd 20.10's legacy
builder does with the same text; drivers/buildcontext.py's .dockerignore rules and scoped
paths; drivers/builder.py's options, build args, stage selection and `commit --change`.
"""
import os

import pytest

from drivers import buildcontext, builder, dockerfile
from drivers.errdefs import InvalidParameter


def stages_of(text):
    return dockerfile.parse_stages(dockerfile.parse(text))


def commands_of(text):
    stages, _ = stages_of(text)
    return stages[0].commands


def word(text, *env):
    return dockerfile.ShellLex().process_word(text, list(env))


# -- lines: comments, continuation, directives ---------------------------------------------

def test_comments_and_blank_lines_are_skipped_and_lines_are_numbered():
    result = dockerfile.parse("# a comment\n\nFROM busybox\n   # indented comment\nRUN true\n")
    assert [(node.value, node.start_line) for node in result.nodes] == [("from", 3), ("run", 5)]


def test_continuation_joins_lines_and_skips_comments_inside():
    node = dockerfile.parse("FROM x\nRUN echo a \\\n  # not part of it\n  && echo b\n").nodes[1]
    assert node.args == ["echo a   && echo b"]
    assert (node.start_line, node.end_line) == (2, 4)


def test_empty_continuation_line_is_a_warning():
    result = dockerfile.parse("FROM x\nRUN echo a \\\n\n  b\n")
    assert result.nodes[1].args == ["echo a   b"]
    assert result.warnings[0].startswith("[WARNING]: Empty continuation line found in:")


def test_escape_directive_makes_the_backtick_the_escape():
    result = dockerfile.parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  /w\n")
    assert result.escape == "`"
    assert result.nodes[1].args == ["dir c:\\   /w"]


def test_syntax_directive_is_noted_and_directives_end_at_the_first_other_line():
    result = dockerfile.parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\n")
    assert result.syntax == "docker/dockerfile:1" and result.escape == "`"
    late = dockerfile.parse("FROM x\n# escape=`\nRUN a \\\n b\n")
    assert late.escape == "\\" and late.nodes[1].args == ["a  b"]


def test_a_repeated_or_invalid_directive_is_refused():
    with pytest.raises(InvalidParameter, match="only one escape parser directive can be used"):
        dockerfile.parse("# escape=`\n# escape=`\nFROM x\n")
    with pytest.raises(InvalidParameter, match="invalid escape token '!' does not match"):
        dockerfile.parse("# escape=!\nFROM x\n")


def test_a_file_of_comments_has_no_instructions():
    with pytest.raises(InvalidParameter, match="file with no instructions"):
        dockerfile.parse("# only\n\n")


def test_heredocs_are_refused_clearly():
    with pytest.raises(InvalidParameter, match="heredocs .*<<EOF.* need BuildKit"):
        dockerfile.parse("FROM x\nRUN cat <<EOF > /f\nhello\nEOF\n")
    with pytest.raises(InvalidParameter, match="heredocs"):
        dockerfile.parse("FROM x\nCOPY <<-'EOT' /f\n")
    assert dockerfile.parse("FROM x\nRUN cat <<<word\n").nodes[1].args == ["cat <<<word"]


# -- instructions ----------------------------------------------------------------------------

def test_json_form_and_shell_form():
    run, cmd, entrypoint = commands_of('FROM x\nRUN ["echo", "hi"]\nCMD echo "a b"\nENTRYPOINT [not json\n')
    assert run.command == ["echo", "hi"] and not run.prepend_shell
    assert cmd.command == ['echo "a b"'] and cmd.prepend_shell
    assert entrypoint.command == ["[not json"] and entrypoint.prepend_shell


def test_a_json_array_of_non_strings_is_an_error():
    with pytest.raises(InvalidParameter, match="arrays must be comprised of strings only"):
        dockerfile.parse("FROM x\nCMD [1, 2]\n")


def test_flags_are_parsed_and_unknown_ones_refused():
    copy = commands_of("FROM x\nCOPY --from=build --chown='a b':g src dst/\n")[0]
    assert (copy.from_stage, copy.chown, copy.sources, copy.dest) == ("build", "a b:g", ["src"], "dst/")
    with pytest.raises(InvalidParameter, match="dockerfile parse error line 2: Unknown flag: link"):
        stages_of("FROM x\nCOPY --link a b\n")
    assert commands_of("FROM x\nRUN --mount=type=cache,target=/c true\n")[0].flags_used == ["mount"]


def test_env_and_label_forms():
    env, legacy, label = commands_of('FROM x\nENV A=1 B="two words"\nENV C hello world\nLABEL "k v"=x\n')
    assert env.pairs == [("A", "1"), ("B", '"two words"')]
    assert legacy.pairs == [("C", "hello world")]
    assert label.pairs == [('"k v"', "x")]
    with pytest.raises(InvalidParameter, match="Syntax error - can't find = in \"b\""):
        stages_of("FROM x\nENV a=1 b\n")
    with pytest.raises(InvalidParameter, match="ENV must have two arguments"):
        stages_of("FROM x\nENV lonely\n")


def test_from_with_stage_name_and_platform():
    stages, meta = stages_of("ARG V=1\nFROM --platform=linux/amd64 busybox:$V AS Build\nRUN true\n")
    assert [command.args for command in meta] == [[("V", "1")]]
    assert (stages[0].base, stages[0].name, stages[0].platform) == ("busybox:$V", "build", "linux/amd64")
    with pytest.raises(InvalidParameter, match="invalid name for build stage"):
        stages_of("FROM x AS 1bad\n")
    with pytest.raises(InvalidParameter, match="FROM requires either one or three arguments"):
        stages_of("FROM x y\n")


def test_unknown_instruction_and_missing_from():
    with pytest.raises(InvalidParameter, match="^dockerfile parse error line 3: unknown instruction: FOOBAR$"):
        stages_of("FROM x\n\nfoobar baz\n")
    with pytest.raises(InvalidParameter, match="^no build stage in current context$"):
        stages_of("ARG a\nRUN true\n")


def test_onbuild_keeps_the_trigger_text_and_refuses_chains():
    onbuild = commands_of("FROM x\nonbuild RUN echo $HOME\n")[0]
    assert onbuild.expression == "RUN echo $HOME"
    with pytest.raises(InvalidParameter, match="Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"):
        stages_of("FROM x\nONBUILD ONBUILD RUN true\n")


def test_healthcheck_options():
    health = commands_of("FROM x\nHEALTHCHECK --interval=1m30s --start-period=500ms CMD curl x\n")[0].health
    assert health == {"Test": ["CMD-SHELL", "curl x"], "Interval": 90 * 10 ** 9, "StartPeriod": 5 * 10 ** 8}
    assert commands_of("FROM x\nHEALTHCHECK NONE\n")[0].health == {"Test": ["NONE"]}
    with pytest.raises(InvalidParameter, match="Interval \"interval\" cannot be less than 1ms"):
        stages_of("FROM x\nHEALTHCHECK --interval=0s CMD true\n")
    with pytest.raises(InvalidParameter, match="--retries must be at least 1"):
        stages_of("FROM x\nHEALTHCHECK --retries=0 CMD true\n")


def test_shell_must_be_json_and_expose_sorts_its_words():
    with pytest.raises(InvalidParameter, match="SHELL requires the arguments to be in JSON form"):
        stages_of("FROM x\nSHELL bash -c\n")
    assert commands_of("FROM x\nEXPOSE 80 53/udp 443\n")[0].ports == ["443", "53/udp", "80"]


def test_go_durations():
    assert [dockerfile.format_duration(n) for n in (0, 300 * 10 ** 9, 1500 * 10 ** 6, 3600 * 10 ** 9, 5 * 10 ** 6)] == \
        ["0s", "5m0s", "1.5s", "1h0m0s", "5ms"]
    assert dockerfile.parse_duration("1h2m3.5s") == (3723 * 10 ** 9 + 5 * 10 ** 8)
    with pytest.raises(InvalidParameter, match="time: invalid duration"):
        dockerfile.parse_duration("5 minutes")


# -- words -------------------------------------------------------------------------------------

def test_variables_and_their_modifiers():
    env = ("A=1", "EMPTY=")
    assert [word(text, *env) for text in ("$A", "${A}", "x${A}y", "${NONE}")] == ["1", "1", "x1y", ""]
    assert [word(text, *env) for text in ("${NONE:-d}", "${EMPTY:-d}", "${A:-d}")] == ["d", "d", "1"]
    assert [word(text, *env) for text in ("${A:+alt}", "${EMPTY:+alt}", "${NONE:+alt}")] == ["alt", "", ""]
    with pytest.raises(InvalidParameter, match="NONE: is not allowed to be unset"):
        word("${NONE:?}")
    with pytest.raises(InvalidParameter, match="unsupported modifier \\(%\\) in substitution"):
        word("${A:%x}", *env)
    with pytest.raises(InvalidParameter, match="bad substitution"):
        word("${:x}")


def test_quotes_and_escapes():
    env = ("A=1", "SP=a b")
    assert word("'$A'", *env) == "$A"
    assert word('"$A and $SP"', *env) == "1 and a b"
    assert word('\\$A', *env) == "$A"
    assert word('"a\\"b"') == 'a"b' and word('a\\ b') == "a b"
    with pytest.raises(InvalidParameter, match="unexpected end of statement while looking for matching double-quote"):
        word('"open')


def test_words_split_after_substitution_but_not_inside_quotes():
    lex = dockerfile.ShellLex()
    assert lex.process_words("$PORTS", ["PORTS=80 443"]) == ["80", "443"]
    assert lex.process_words('"$PORTS"', ["PORTS=80 443"]) == ["80 443"]


# -- .dockerignore and scoped paths --------------------------------------------------------

def test_dockerignore_patterns_like_the_cli():
    matcher = buildcontext.PatternMatcher(buildcontext.read_dockerignore(
        "# comment\n*.log\n/build\n**/*.tmp\nlogs\n!logs/keep.log\n"))
    assert matcher.matches("a.log") and not matcher.matches("sub/a.log")
    assert matcher.matches("build") and matcher.matches("build/x/y")
    assert matcher.matches("x.tmp") and matcher.matches("a/b/c.tmp")
    assert matcher.matches("logs/other") and not matcher.matches("logs/keep.log")
    assert not matcher.matches("README")
    with pytest.raises(InvalidParameter, match="illegal exclusion pattern"):
        buildcontext.PatternMatcher(["!"])


def test_apply_dockerignore_prunes_the_context(tmp_path):
    for name in ("keep.txt", "a.log", "logs/keep.log", "logs/drop", "deep/x.tmp", "deep/y.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / ".dockerignore").write_text("*.log\nlogs\n!logs/keep.log\n**/*.tmp\n.dockerignore\n")
    buildcontext.apply_dockerignore(buildcontext.Source(str(tmp_path)))
    left = sorted(os.path.relpath(os.path.join(top, name), tmp_path)
                  for top, _, names in os.walk(tmp_path) for name in names)
    assert left == ["deep/y.txt", "keep.txt", "logs/keep.log"]


def test_source_paths_follow_symlinks_inside_the_source(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("context's own")
    os.symlink("/etc/passwd", str(tmp_path / "absolute"))
    os.symlink("../../../../etc/passwd", str(tmp_path / "climbing"))
    source = buildcontext.Source(str(tmp_path))
    assert source.resolve("absolute") == "etc/passwd"
    assert source.resolve("climbing") == "etc/passwd"
    assert source.resolve("a/../etc/passwd") == "etc/passwd"
    with pytest.raises(buildcontext.ForbiddenPath, match=r"forbidden path outside the build context: \.\./x \(\)"):
        source.resolve("../x")


def test_checksums_change_with_content_not_with_time(tmp_path):
    path = tmp_path / "f"
    path.write_text("one")
    first = buildcontext.Source(str(tmp_path)).hash("f")
    os.utime(str(path), (1, 1))
    assert buildcontext.Source(str(tmp_path)).hash("f") == first
    path.write_text("two")
    assert buildcontext.Source(str(tmp_path)).hash("f") != first


# -- the builder's pure parts ----------------------------------------------------------------

def options(**query):
    return builder.BuildOptions.from_query({key: [value] for key, value in query.items()})


def test_build_options_from_the_query():
    parsed = options(t="app:1", buildargs='{"A":"1","B":null}', labels='{"l":"v"}', rm="0", q="1")
    assert [str(ref) for ref in parsed.tags] == ["docker.io/library/app:1"]
    assert parsed.build_args == {"A": "1", "B": None} and parsed.labels == {"l": "v"}
    assert parsed.quiet and not parsed.remove and not parsed.force_remove
    assert options().remove and options(forcerm="1").remove


@pytest.mark.parametrize("query, message", [
    ({"squash": "1"}, "squash is only supported with experimental mode"),
    ({"t": "app@sha256:" + "a" * 64}, "build tag cannot contain a digest"),
    ({"buildargs": "[1]"}, "error reading build args"),
    ({"version": "2"}, "BuildKit is not supported by pydockerd"),
    ({"securityopt": "seccomp=unconfined"}, "does not support setting security options on build"),
    ({"outputs": '[{"type":"local"}]'}, "outputs is a BuildKit option"),
])
def test_build_options_refused(query, message):
    with pytest.raises(InvalidParameter, match=message.replace("(", "\\(")):
        options(**query)


def test_predefined_proxy_args_stay_out_of_the_image():
    args = builder.BuildArgs({"HTTP_PROXY": "http://proxy:3128", "FOO": "bar"})
    args.add("FOO", None)
    env = args.filter_allowed(["PATH=/bin"])
    assert env == ["FOO=bar", "HTTP_PROXY=http://proxy:3128"]
    assert builder.prepend_env_on_cmd(args, env, ["sh", "-c", "x"]) == ["|1", "FOO=bar", "sh", "-c", "x"]
    args.add("HTTP_PROXY", None)
    assert builder.prepend_env_on_cmd(args, env, ["x"])[:2] == ["|2", "FOO=bar"]


def test_only_the_stages_the_target_needs_are_built():
    stages, _ = stages_of("FROM a AS one\nFROM b AS two\nFROM one AS three\n"
                          "FROM c\nCOPY --from=1 / /\nCOPY --from=three / /\n")
    assert builder.needed_stages(stages, 3, []) == [0, 1, 2, 3]
    assert builder.needed_stages(stages, 2, []) == [0, 2]
    stages, _ = stages_of("ARG B=base\nFROM x AS base\nFROM y AS other\nFROM $B\n")
    assert builder.needed_stages(stages, 2, ["B=base"]) == [0, 2]


def test_history_text_of_healthcheck_is_dockerds():
    health = {"Test": ["CMD-SHELL", "true"], "Interval": 300 * 10 ** 9, "Retries": 3}
    assert builder.health_text(health) == '&{["CMD-SHELL" "true"] "5m0s" "0s" "0s" \'\\x03\'}'


def test_commit_changes_edit_the_config():
    config = builder.build_from_config(
        {"Cmd": ["old"], "Env": ["PATH=/bin"], "WorkingDir": "/srv"},
        ['CMD ["/bin/sh", "-c", "echo hi"]', "ENTRYPOINT /entry", 'ENV A=1 B="two words" C=$A',
         "EXPOSE 80 53/udp 8000-8001", "LABEL com.example=yes", "USER nobody", "VOLUME /data",
         "WORKDIR app", "HEALTHCHECK CMD true", "ONBUILD RUN true"])
    assert config["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "/entry"]
    # one ENV line is expanded against the environment before it: C gets the old $A (none)
    assert config["Env"] == ["PATH=/bin", "A=1", "B=two words", "C="]
    assert sorted(config["ExposedPorts"]) == ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]
    assert config["Labels"] == {"com.example": "yes"} and config["User"] == "nobody"
    assert config["Volumes"] == {"/data": {}} and config["WorkingDir"] == "/srv/app"
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"]} and config["OnBuild"] == ["RUN true"]


def test_commit_changes_entrypoint_resets_an_inherited_cmd():
    assert builder.build_from_config({"Cmd": ["old"]}, ['ENTRYPOINT ["/e"]'])["Cmd"] is None
    assert builder.build_from_config({"Cmd": ["old"]}, ["CMD new", 'ENTRYPOINT ["/e"]'])["Cmd"] == \
        ["/bin/sh", "-c", "new"]


@pytest.mark.parametrize("change, message", [
    ("RUN rm -rf /", "^run is not a valid change command$"),
    ("EXPOSE http", "Invalid containerPort: http"),
    ("FROM busybox", "^from is not a valid change command$"),
])
def test_commit_changes_refused(change, message):
    with pytest.raises(InvalidParameter, match=message):
        builder.build_from_config({}, [change])
